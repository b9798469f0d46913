import AsyncHTTPClient
import FerryClient
import FerryClientAHC
import FerryHTTP
import FerryServer
import FerryTestSupport
import Foundation
import HTTPTypes
import Synchronization
import Testing

/// Counts the requests a transport sends, by method and path prefix.
final class CountingTransport: UploadTransport {
    let base: any UploadTransport
    let counts = Mutex<[String: Int]>([:])

    init(base: any UploadTransport) { self.base = base }

    func send(_ request: TransportRequest, progress: @escaping @Sendable (Int64) -> Void) async throws -> TransportResponse {
        let key = "\(request.method.rawValue) /\(request.url.pathComponents.dropFirst().first ?? "")"
        counts.withLock { $0[key, default: 0] += 1 }
        return try await base.send(request, progress: progress)
    }

    subscript(key: String) -> Int { counts.withLock { $0[key] ?? 0 } }
}

@Suite("Upload queue end to end against a real server")
struct UploadQueueEndToEndTests {
    /// Plain HTTP/1.1 (a pool of 4 connections), or HTTPS with HTTP/2 (one connection).
    enum Link: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case plainHTTP1 = "HTTP/1.1"
        case tlsHTTP2 = "HTTPS h2"
        var testDescription: String { rawValue }
    }

    @Test(arguments: Link.allCases)
    func twoHundredSmallFilesEachInOneRequest(_ link: Link) async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-queue-e2e-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let files = root.appendingPathComponent("files")
        try FileManager.default.createDirectory(at: files, withIntermediateDirectories: true)
        // 200 files of 64-512 KiB: slices of one random MiB at random offsets, each starting
        // with its own index so no two are alike.
        var generator = SplitMix(seed: 42)
        var pool = [UInt8](repeating: 0, count: 1 << 20)
        pool.withUnsafeMutableBytes { raw in
            for index in 0..<(raw.count / 8) { raw.storeBytes(of: generator.next(), toByteOffset: index * 8, as: UInt64.self) }
        }
        let extensions = ["jpg", "m4a", "mp4", "bin"]
        var paths: [String] = []
        for index in 0..<200 {
            let size = Int.random(in: (64 << 10)...(512 << 10), using: &generator)
            let start = Int.random(in: 0...(pool.count - size), using: &generator)
            var bytes = Array(pool[start..<(start + size)])
            withUnsafeBytes(of: UInt64(index).littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
            let path = files.appendingPathComponent("f\(index).\(extensions[index % extensions.count])").path
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            paths.append(path)
        }

        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        try await TestServer.with(configure: { configuration in
            if link == .tlsHTTP2 {
                configuration.http.transport.tls = TLSFiles(certificateChain: certificates.leaf.chain, privateKey: certificates.leaf.key)
            }
        }) { server in
            let client = try AsyncHTTPClientTransport.makeClient(
                http1ConnectionsPerHost: 4, tls: ClientTLSOptions(caFile: certificates.caCertificate, pins: [certificates.leafPin])
            )
            let transport = CountingTransport(base: AsyncHTTPClientTransport(client: client))
            let endpoint = URL(string: link == .tlsHTTP2 ? "https://localhost:\(server.port)/files/" : "http://127.0.0.1:\(server.port)/files/")!
            let queue = try await UploadQueue(directory: root.appendingPathComponent("queue"), transport: transport)
            let ids = try await queue.enqueue(paths.map { path in
                UploadQueue.Entry(file: path, endpoint: endpoint, metadata: [("filename", URL(fileURLWithPath: path).lastPathComponent)])
            })
            let summary = await queue.run()
            try await client.shutdown()

            #expect(summary.succeeded, "\(summary.items.filter { $0.state != .done }.prefix(3))")
            #expect(summary.done == 200)
            switch link {
            case .plainHTTP1:
                #expect(queue.snapshot.httpVersion == .http1_1)
                #expect(queue.snapshot.concurrency == 4)
                #expect(server.server.census.accepted(.http1) <= 4)
            case .tlsHTTP2:
                #expect(queue.snapshot.httpVersion == .http2)
                #expect(queue.snapshot.concurrency == 8)
                // Every file over one TCP connection, counted by the server.
                #expect(server.server.census.accepted(.http2) == 1)
                #expect(server.server.census.accepted(.http1) == 0)
            }
            // One creation-with-upload per file; discovery only by the members that started
            // before the first one answered.
            #expect(transport["POST /files"] == 200)
            #expect(transport["PATCH /files"] == 0)
            #expect(transport["OPTIONS /files"] <= queue.snapshot.concurrency)
            for (path, id) in zip(paths, ids) {
                let url = try #require(summary[id]?.url)
                let stored = try Data(contentsOf: URL(fileURLWithPath: server.directory + "/uploads/" + url.lastPathComponent))
                #expect(stored == (try Data(contentsOf: URL(fileURLWithPath: path))), "\(path)")
            }
        }
    }
}
