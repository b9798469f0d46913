import AsyncHTTPClient
import Crypto
import FerryClient
import FerryClientAHC
import Foundation
import Testing

/// A temporary file of deterministic bytes.
struct TestFile {
    let path: String
    let bytes: [UInt8]

    init(size: Int, seed: UInt8 = 1) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-client-\(UUID().uuidString)").path
        var generator = SplitMix(seed: UInt64(seed))
        var bytes = [UInt8](repeating: 0, count: size)
        bytes.withUnsafeMutableBytes { raw in
            var index = 0
            while index < size {
                var word = generator.next()
                for _ in 0..<min(8, size - index) {
                    raw[index] = UInt8(truncatingIfNeeded: word)
                    word >>= 8
                    index += 1
                }
            }
        }
        self.bytes = bytes
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Client end to end against a real server")
struct ClientEndToEndTests {
    func stored(_ server: TestServer, _ url: URL) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: server.directory + "/uploads/" + url.lastPathComponent)))
    }

    @Test func uploadsInAdaptiveChunks() async throws {
        let file = try TestFile(size: 5_000_000)
        defer { file.remove() }
        try await TestServer.with { server in
            let client = try AsyncHTTPClientTransport.makeClient()
            let endpoint = URL(string: "http://127.0.0.1:\(server.port)/files/")!
            var options = UploadOptions(metadata: [("filename", "a.bin")])
            options.chunk = .init(minimum: 256 << 10, maximum: 1 << 20)
            let upload = Upload(file: file.path, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client), options: options)
            let result = try await upload.run()
            try await client.shutdown()
            #expect(result.length == 5_000_000)
            #expect(result.requests >= 5)
            #expect(try stored(server, result.url) == file.bytes)
        }
    }

    @Test func uploadsOverURLSession() async throws {
        let file = try TestFile(size: 3_000_000, seed: 6)
        defer { file.remove() }
        try await TestServer.with { server in
            let transport = URLSessionTransport()
            defer { transport.invalidate() }
            let endpoint = URL(string: "http://127.0.0.1:\(server.port)/files/")!
            var options = UploadOptions(metadata: [("filename", "u.bin")])
            options.chunk = .fixed(1 << 20)
            let result = try await Upload(file: file.path, endpoint: endpoint, transport: transport, options: options).run()
            #expect(result.requests == 5)
            #expect(try stored(server, result.url) == file.bytes)
        }
    }

    @Test func parallelStreamsConcatenate() async throws {
        let file = try TestFile(size: 13_000_001, seed: 7)
        defer { file.remove() }
        try await TestServer.with { server in
            let client = try AsyncHTTPClientTransport.makeClient()
            let endpoint = URL(string: "http://127.0.0.1:\(server.port)/files/")!
            var options = UploadOptions(metadata: [("filename", "p.bin")])
            options.parallelism = .fixed(3)
            options.chunk = .fixed(1 << 20)
            let upload = Upload(file: file.path, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client), options: options)
            let result = try await upload.run()
            try await client.shutdown()
            #expect(result.length == 13_000_001)
            #expect(try stored(server, result.url) == file.bytes)
            let connection = try await server.connect()
            let head = try await connection.exchange("HEAD", result.url.path, [tus])
            await connection.close()
            #expect(head.header("Upload-Concat")?.hasPrefix("final;") == true)
            #expect(head.header("Upload-Metadata") == "filename cC5iaW4=")
        }
    }

    @Test func streamsOfUnknownLengthUseDeferredLength() async throws {
        let chunks = (0..<6).map { index in (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) } }
        let stream = AsyncStream<[UInt8]> { continuation in
            Task {
                for chunk in chunks {
                    continuation.yield(chunk)
                    try? await Task.sleep(for: .milliseconds(30))
                }
                continuation.finish()
            }
        }
        try await TestServer.with { server in
            let client = try AsyncHTTPClientTransport.makeClient()
            let endpoint = URL(string: "http://127.0.0.1:\(server.port)/files/")!
            let upload = try Upload(stream: stream, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client))
            let result = try await upload.run()
            try await client.shutdown()
            #expect(result.length == 1_800_000)
            #expect(try stored(server, result.url) == chunks.flatMap { $0 })
            let connection = try await server.connect()
            let head = try await connection.exchange("HEAD", result.url.path, [tus])
            await connection.close()
            #expect(head.header("Upload-Length") == "1800000", "\(head.status) \(head.headers)")
        }
    }

    @Test func aSmallFileTakesOneRequestWithChecksum() async throws {
        let file = try TestFile(size: 100_000, seed: 2)
        defer { file.remove() }
        try await TestServer.with { server in
            let client = try AsyncHTTPClientTransport.makeClient()
            let endpoint = URL(string: "http://127.0.0.1:\(server.port)/files/")!
            let upload = Upload(file: file.path, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client))
            let result = try await upload.run()
            // OPTIONS, then one creation-with-upload POST (below `instantUploadMinimum`, not announced).
            #expect(result.requests == 2)
            #expect(try stored(server, result.url) == file.bytes)
            // Announced for instant upload, a file the server does not hold costs one more
            // request: the creation carries the digest instead of the bytes.
            let other = try TestFile(size: 100_000, seed: 9)
            defer { other.remove() }
            var options = UploadOptions()
            options.instantUploadMinimum = 0
            let announced = try await Upload(file: other.path, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client), options: options).run()
            try await client.shutdown()
            #expect(announced.requests == 3 && !announced.storedInstantly)
            #expect(try stored(server, announced.url) == other.bytes)
        }
    }

    @Test func resumesAcrossProcessesFromTheStore() async throws {
        let file = try TestFile(size: 8_000_000, seed: 3)
        defer { file.remove() }
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-state-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: state) }
        try await TestServer.with { server in
            let client = try AsyncHTTPClientTransport.makeClient()
            let endpoint = URL(string: "http://127.0.0.1:\(server.port)/files/")!
            var options = UploadOptions(resumeStore: ResumeStore(directory: state))
            options.chunk = .fixed(1 << 20)
            // First "process": stops (without deleting) after some progress.
            let first = Upload(file: file.path, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client), options: options)
            let running = Task { try await first.run() }
            for await progress in first.progress where progress.acknowledged >= 3 << 20 {
                first.cancel(terminate: false)
                break
            }
            await #expect(throws: UploadError.cancelled) { _ = try await running.value }
            let fingerprint = try await ResumeStore.fingerprint(path: file.path, endpoint: endpoint)
            let record = try #require(ResumeStore(directory: state).load(fingerprint))
            #expect(record.acknowledged >= 3 << 20)
            // Second "process": finds the record, HEADs, continues.
            let second = Upload(file: file.path, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client), options: options)
            let result = try await second.run()
            try await client.shutdown()
            #expect(result.url.absoluteString == record.uploadURL)
            #expect(result.bytesSent <= 8_000_000 - (3 << 20) + (1 << 20))
            #expect(try stored(server, result.url) == file.bytes)
            #expect(ResumeStore(directory: state).load(record.fingerprint) == nil)
        }
    }

    @Test func aGoneUploadStartsOverOnce() async throws {
        let file = try TestFile(size: 2_000_000, seed: 4)
        defer { file.remove() }
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-state-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: state) }
        try await TestServer.with { server in
            let endpoint = URL(string: "http://127.0.0.1:\(server.port)/files/")!
            let store = ResumeStore(directory: state)
            let fingerprint = try await ResumeStore.fingerprint(path: file.path, endpoint: endpoint)
            // A record pointing at an upload the server deleted.
            let path = try await server.create(length: 2_000_000)
            let connection = try await server.connect()
            _ = try await connection.exchange("DELETE", path, [tus])
            await connection.close()
            try store.save(ResumeRecord(fingerprint: fingerprint, endpoint: endpoint.absoluteString, uploadURL: "http://127.0.0.1:\(server.port)\(path)", length: 2_000_000, acknowledged: 0, chunkSize: 1 << 20))
            let client = try AsyncHTTPClientTransport.makeClient()
            let upload = Upload(file: file.path, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client), options: UploadOptions(resumeStore: store))
            let result = try await upload.run()
            try await client.shutdown()
            #expect(result.url.path != path)
            #expect(try stored(server, result.url) == file.bytes)
        }
    }

    @Test func rejectionsAreFatalWithTheServersCode() async throws {
        let file = try TestFile(size: 3_000_000, seed: 5)
        defer { file.remove() }
        try await TestServer.with(configure: { $0.engine.maxSize = 1_000_000 }) { server in
            let client = try AsyncHTTPClientTransport.makeClient()
            let endpoint = URL(string: "http://127.0.0.1:\(server.port)/files/")!
            let upload = Upload(file: file.path, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client))
            // Tus-Max-Size from OPTIONS refuses it before a byte is sent.
            await #expect(throws: UploadError.rejected(status: 413, code: "ERR_MAX_SIZE_EXCEEDED", message: "the server accepts at most 1000000 bytes (Tus-Max-Size)")) {
                _ = try await upload.run()
            }
            try await client.shutdown()
        }
    }
}
