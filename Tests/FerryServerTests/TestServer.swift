import FerryCore
import FerryServer
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A real Ferry server (disk + SQLite) on an ephemeral port, for live-socket tests.
struct TestServer {
    let port: Int
    let server: FerryServer
    let directory: String

    /// Starts a server, runs `body`, then shuts the server down gracefully.
    static func with<T>(
        configure: (inout FerryServerConfiguration) -> Void = { _ in },
        _ body: (TestServer) async throws -> T
    ) async throws -> T {
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-live-\(UUID().uuidString)").path
        var configuration = FerryServerConfiguration(dataDirectory: temporary)
        configuration.http.port = 0
        configuration.engine.lockTimeout = .seconds(3)
        configure(&configuration)
        let directory = configuration.dataDirectory
        defer { if directory == temporary { try? FileManager.default.removeItem(atPath: directory) } }
        var logger = Logger(label: "ferry-live")
        logger.logLevel = .warning
        let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
        let server = try FerryServer(configuration: configuration, logger: logger) { channel in
            portContinuation.yield(channel.localAddress?.port ?? 0)
            portContinuation.finish()
        }
        let group = server.serviceGroup(signals: [])
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = portStream.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            do {
                let value = try await body(TestServer(port: port, server: server, directory: directory))
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return value
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }

    func connect() async throws -> RawConnection { try await RawConnection.connect(port: port) }

    /// Creates an upload and returns its path (`/files/<id>`).
    func create(length: Int?, _ extra: [(String, String)] = []) async throws -> String {
        let connection = try await connect()
        defer { Task { await connection.close() } }
        var headers = [("Tus-Resumable", "1.0.0")] + extra
        headers.append(length.map { ("Upload-Length", String($0)) } ?? ("Upload-Defer-Length", "1"))
        let response = try await connection.exchange("POST", "/files/", headers)
        guard response.status == 201, let location = response.header("location"), let path = URL(string: location)?.path else {
            throw RawConnection.RawError.malformed
        }
        return path
    }

    func offset(_ path: String) async throws -> Int? {
        let connection = try await connect()
        defer { Task { await connection.close() } }
        let response = try await connection.exchange("HEAD", path, [("Tus-Resumable", "1.0.0")])
        return response.header("upload-offset").flatMap(Int.init)
    }

    /// The offset once it is `expected`, or the last one seen after 2.5 s: a save that follows a
    /// disconnect takes longer on a loaded machine than on an idle one.
    func offset(_ path: String, reaching expected: Int) async throws -> Int? {
        var offset: Int?
        for _ in 0..<50 {
            offset = try await self.offset(path)
            if offset == expected { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        return offset
    }
}

let tus = ("Tus-Resumable", "1.0.0")
let octets = ("Content-Type", "application/offset+octet-stream")
let hello = Array("hello".utf8)
let sha1Hello = "qvTGHdzF6KLavt4PO0gs2a6pQ00="

extension TestServer {
    /// One request on a new connection (a refused body closes it); every response to it, the
    /// interim ones first, the final one last.
    func responses(_ method: String, _ path: String, _ headers: [(String, String)], body: [UInt8] = []) async throws -> [RawConnection.Response] {
        let connection = try await connect()
        defer { Task { await connection.close() } }
        try await connection.request(method, path, headers, body: body)
        var all = [try await connection.response(isHead: method == "HEAD")]
        while let last = all.last, last.status < 200 { all.append(try await connection.response(isHead: method == "HEAD")) }
        return all
    }

    /// The final response to one request on a new connection.
    func send(_ method: String, _ path: String, _ headers: [(String, String)], body: [UInt8] = []) async throws -> RawConnection.Response {
        try await responses(method, path, headers, body: body).last!
    }
}
