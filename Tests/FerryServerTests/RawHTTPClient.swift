import NIOCore
import NIOPosix

/// A deliberately low-level HTTP/1.1 client over one TCP connection, so tests control every
/// byte: partial bodies, chunked encoding, trailers, `Expect`, abrupt closes.
final class RawConnection: @unchecked Sendable {
    // @unchecked: used by one test task at a time; the NIO channel itself is thread-safe.
    let channel: any Channel
    private var iterator: AsyncStream<ByteBuffer>.AsyncIterator
    private var pending = ByteBuffer()

    struct Response {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]

        func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }

        var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// Forwards received bytes into an `AsyncStream`, which ends when the connection closes.
    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let continuation: AsyncStream<ByteBuffer>.Continuation

        init(_ continuation: AsyncStream<ByteBuffer>.Continuation) { self.continuation = continuation }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            continuation.yield(unwrapInboundIn(data))
        }

        func channelInactive(context: ChannelHandlerContext) {
            continuation.finish()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    static func connect(port: Int) async throws -> RawConnection {
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(continuation))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel, stream)
    }

    private init(_ channel: any Channel, _ stream: AsyncStream<ByteBuffer>) {
        self.channel = channel
        self.iterator = stream.makeAsyncIterator()
    }

    func send(_ text: String) async throws { try await send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// Sends a request head (and optional body) with the given headers.
    func request(_ method: String, _ path: String, _ headers: [(String, String)] = [], body: [UInt8] = []) async throws {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty, !headers.contains(where: { $0.0.lowercased() == "content-length" || $0.0.lowercased() == "transfer-encoding" }) {
            head += "Content-Length: \(body.count)\r\n"
        }
        head += "\r\n"
        try await send(Array(head.utf8) + body)
    }

    /// Reads one response (1xx interim responses included, as their own responses).
    func response(isHead: Bool = false) async throws -> Response {
        let headEnd = try await readUntil([13, 10, 13, 10])
        let lines = String(decoding: headEnd, as: UTF8.self).split(separator: "\r\n")
        guard let statusLine = lines.first, statusLine.split(separator: " ").count >= 2,
            let status = Int(statusLine.split(separator: " ")[1])
        else { throw RawError.malformed }
        var headers: [(String, String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var response = Response(status: status, headers: headers, body: [])
        if status >= 200, !isHead, status != 204, status != 304, let length = response.header("content-length").flatMap(Int.init) {
            response.body = try await readExactly(length)
        }
        return response
    }

    /// Sends a request and reads its final response (skipping a `100 Continue`).
    func exchange(_ method: String, _ path: String, _ headers: [(String, String)] = [], body: [UInt8] = []) async throws -> Response {
        try await request(method, path, headers, body: body)
        var response = try await response(isHead: method == "HEAD")
        while response.status == 100 { response = try await self.response(isHead: method == "HEAD") }
        return response
    }

    /// True once the server closed the connection.
    func isClosedByServer() async -> Bool {
        while let more = await iterator.next() { pending.writeImmutableBuffer(more) }
        return true
    }

    func close() async {
        try? await channel.close()
    }

    private func fill() async throws {
        guard var more = await iterator.next() else { throw RawError.closed }
        pending.writeBuffer(&more)
    }

    private func readUntil(_ marker: [UInt8]) async throws -> [UInt8] {
        while true {
            let view = Array(pending.readableBytesView)
            if let range = find(marker, in: view) {
                let head = Array(view[..<range])
                pending.moveReaderIndex(forwardBy: range + marker.count)
                return head
            }
            try await fill()
        }
    }

    func readExactly(_ count: Int) async throws -> [UInt8] {
        while pending.readableBytes < count { try await fill() }
        return pending.readBytes(length: count) ?? []
    }

    private func find(_ marker: [UInt8], in bytes: [UInt8]) -> Int? {
        guard bytes.count >= marker.count else { return nil }
        for index in 0...(bytes.count - marker.count) where Array(bytes[index..<index + marker.count]) == marker {
            return index
        }
        return nil
    }

    enum RawError: Error { case malformed, closed }
}
