import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A loopback HTTP/1.1 server that answers each request with raw bytes a script chooses, and
/// counts the connections it accepted: for testing a client's connection handling.
final class ScriptedHTTPServer: Sendable {
    /// What to do with the `index`-th request (from 0) on the `connection`-th connection.
    struct Reply: Sendable {
        var bytes: [UInt8]
        /// Close the connection after writing (without saying so, unless `bytes` does).
        var close = false

        static func raw(_ text: String, close: Bool = false) -> Reply { Reply(bytes: Array(text.utf8), close: close) }
        static func ok(_ body: String, headers: String = "") -> Reply {
            raw("HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\(headers)\r\n\(body)")
        }
        /// Never answers.
        static let silent = Reply(bytes: [])
    }

    final class Counters: Sendable {
        let accepted = Mutex(0)
        let requests = Mutex<[String]>([])
    }

    let channel: any Channel
    let counters: Counters
    var port: Int { channel.localAddress?.port ?? 0 }
    var connections: Int { counters.accepted.withLock { $0 } }
    var received: [String] { counters.requests.withLock { $0 } }

    init(script: @escaping @Sendable (_ connection: Int, _ index: Int) -> Reply) async throws {
        let counters = Counters()
        self.counters = counters
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                let number = counters.accepted.withLock { count in
                    defer { count += 1 }
                    return count
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Connection(number: number, script: script, counters: counters))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func close() async { try? await channel.close() }

    private final class Connection: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        let number: Int
        let script: @Sendable (Int, Int) -> Reply
        let counters: Counters
        var buffer: [UInt8] = []
        var index = 0

        init(number: Int, script: @escaping @Sendable (Int, Int) -> Reply, counters: Counters) {
            self.number = number
            self.script = script
            self.counters = counters
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            buffer += Array(buffer: unwrapInboundIn(data))
            while let end = Self.requestEnd(buffer) {
                let request = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(end)
                counters.requests.withLock { $0.append(request) }
                let reply = script(number, index)
                index += 1
                if !reply.bytes.isEmpty {
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: reply.bytes)), promise: nil)
                }
                if reply.close {
                    context.close(promise: nil)
                    return
                }
            }
        }

        /// Where the first complete request (head and `Content-Length` body) ends.
        static func requestEnd(_ bytes: [UInt8]) -> Int? {
            let separator = Array("\r\n\r\n".utf8)
            guard bytes.count >= 4, let headEnd = (0...(bytes.count - 4)).first(where: { Array(bytes[$0..<$0 + 4]) == separator }) else { return nil }
            let head = String(decoding: bytes[..<headEnd], as: UTF8.self).lowercased()
            let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
            let end = headEnd + 4 + length
            return bytes.count >= end ? end : nil
        }
    }
}
