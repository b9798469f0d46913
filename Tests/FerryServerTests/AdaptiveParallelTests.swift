import AsyncHTTPClient
import FerryClient
import FerryClientAHC
import FerryNetem
import Foundation
import Synchronization
import Testing

/// Adaptive parallelism against a real server: one stream where one fills the link, more where
/// the network limits each connection, and a split upload that resumes in a new process.
/// Serialized (and run apart from the other suites by scripts/test.sh): the probe's verdicts
/// come from measured rates, which a loaded machine distorts.
@Suite("Adaptive parallel uploads", .serialized)
struct AdaptiveParallelTests {
    /// Fast probing, so a test link shows its verdict in seconds; the probe's verdicts go to `log`.
    static func options(store: ResumeStore? = nil, log: TraceLog? = nil) -> UploadOptions {
        var options = UploadOptions(metadata: [("filename", "big.bin")], network: .cellular, resumeStore: store)
        options.parallelism = .adaptive(maximum: 4, threshold: 8 << 20)
        options.parallelProbe = .init(warmup: .milliseconds(500), span: .seconds(1), settle: .seconds(1), worthwhile: .seconds(3), minimumSplit: 1 << 20)
        if let log { options.trace = { line in log.append(line) } }
        return options
    }

    final class TraceLog: Sendable {
        private let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        func contains(_ text: String) -> Bool { lines.withLock { $0.contains { $0.contains(text) } } }
        var adaptive: [String] { lines.withLock { $0.filter { $0.contains("adaptive") } } }
    }

    func stored(_ server: TestServer, _ url: URL) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: server.directory + "/uploads/" + url.lastPathComponent)))
    }

    @Test func oneStreamFillsALoopbackLinkAndIsConcatenatedByALink() async throws {
        let file = try TestFile(size: 24 << 20, seed: 31)
        defer { file.remove() }
        try await TestServer.with { server in
            let client = try AsyncHTTPClientTransport.makeClient()
            let endpoint = URL(string: "http://127.0.0.1:\(server.port)/files/")!
            var options = Self.options()
            options.parallelProbe.worthwhile = .seconds(3600)
            let upload = Upload(file: file.path, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client), options: options)
            let result = try await upload.run()
            try await client.shutdown()
            #expect(try stored(server, result.url) == file.bytes)
            // One partial (never split: no probe is worth it) and the final.
            let names = try FileManager.default.contentsOfDirectory(atPath: server.directory + "/uploads")
            #expect(names.count == 2)
            let inodes = try names.map { try FileManager.default.attributesOfItem(atPath: server.directory + "/uploads/" + $0)[.systemFileNumber] as? Int }
            #expect(Set(inodes).count == 1, "the final shares the partial's bytes")
        }
    }

    @Test func streamsAreAddedWhereEachConnectionIsLimited() async throws {
        let file = try TestFile(size: 48 << 20, seed: 32)
        defer { file.remove() }
        try await TestServer.with { server in
            // 8 MB/s shared, 1.5 MB/s per connection: one stream would need ~34 s.
            let profile = NetworkProfile(
                name: "per-flow-test", schedule: [.init(duration: .seconds(60), rate: 8_000_000)],
                latency: .milliseconds(20), perConnectionRate: 1_500_000
            )
            let emulator = NetworkEmulator(configuration: .init(targetPort: server.port, profile: profile, seed: 1))
            let port = try await emulator.start()
            let client = try AsyncHTTPClientTransport.makeClient()
            let endpoint = URL(string: "http://127.0.0.1:\(port)/files/")!
            let log = TraceLog()
            let upload = Upload(file: file.path, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client), options: Self.options(log: log))
            let result = try await upload.run()
            // The speed-up itself is a benchmark figure (bench/client.sh, per-flow), not a timed test.
            #expect(log.contains("the added stream raised"), "\(log.adaptive)")
            try await client.shutdown()
            await emulator.stop()
            #expect(try stored(server, result.url) == file.bytes)
            let streams = try FileManager.default.contentsOfDirectory(atPath: server.directory + "/uploads").count - 1
            #expect(streams >= 2, "streams: \(streams)")
        }
    }

    @Test func aSharedLinkKeepsOneStreamAtItsRate() async throws {
        let file = try TestFile(size: 12 << 20, seed: 33)
        defer { file.remove() }
        try await TestServer.with { server in
            // 500 KB/s shared by every connection: a second stream cannot help (slow enough that
            // the turnaround between requests, long on a loaded machine, stays far below the gain
            // a probe must show).
            let profile = NetworkProfile(name: "shared-test", schedule: [.init(duration: .seconds(60), rate: 500_000)], latency: .milliseconds(20))
            let emulator = NetworkEmulator(configuration: .init(targetPort: server.port, profile: profile, seed: 1))
            let port = try await emulator.start()
            let client = try AsyncHTTPClientTransport.makeClient()
            let endpoint = URL(string: "http://127.0.0.1:\(port)/files/")!
            let log = TraceLog()
            let upload = Upload(file: file.path, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client), options: Self.options(log: log))
            let result = try await upload.run()
            try await client.shutdown()
            await emulator.stop()
            #expect(try stored(server, result.url) == file.bytes)
            #expect(log.contains("a probe"), "\(log.adaptive)")
            #expect(!log.contains("the added stream raised"), "\(log.adaptive)")
            // The first stream, the probe that did not pay, and the final: no further probe.
            let names = try FileManager.default.contentsOfDirectory(atPath: server.directory + "/uploads")
            #expect(names.count == 3, "uploads: \(names.count); \(log.adaptive)")
        }
    }

    @Test func aSplitUploadResumesEveryStreamInANewProcess() async throws {
        let file = try TestFile(size: 32 << 20, seed: 34)
        defer { file.remove() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-resume-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = ResumeStore(directory: directory)
        try await TestServer.with { server in
            let profile = NetworkProfile(
                name: "per-flow-test", schedule: [.init(duration: .seconds(60), rate: 6_000_000)],
                latency: .milliseconds(20), perConnectionRate: 1_000_000
            )
            let emulator = NetworkEmulator(configuration: .init(targetPort: server.port, profile: profile, seed: 1))
            let port = try await emulator.start()
            let client = try AsyncHTTPClientTransport.makeClient()
            let endpoint = URL(string: "http://127.0.0.1:\(port)/files/")!
            let transport = AsyncHTTPClientTransport(client: client)

            // The first "process" runs until it has split, then stops without terminating.
            let first = Upload(file: file.path, endpoint: endpoint, transport: transport, options: Self.options(store: store))
            async let firstRun = first.run()
            var sent: Int64 = 0
            for await progress in first.progress where progress.acknowledged > 14 << 20 {
                sent = progress.acknowledged
                first.cancel(terminate: false)
                break
            }
            _ = try? await firstRun
            let fingerprint = try await ResumeStore.fingerprint(path: file.path, endpoint: endpoint)
            let plan = try #require(store.loadPlan(fingerprint))
            #expect(plan.segments.count >= 2, "the first run split the upload")
            #expect(plan.isConsistent)

            // The second continues every stream: far fewer bytes than the file are sent again.
            let second = Upload(file: file.path, endpoint: endpoint, transport: transport, options: Self.options(store: store))
            let result = try await second.run()
            try await client.shutdown()
            await emulator.stop()
            #expect(try stored(server, result.url) == file.bytes)
            #expect(result.bytesSent <= Int64(32 << 20) - sent + (4 << 20), "resent \(result.bytesSent), first run had \(sent)")
            #expect(store.loadPlan(fingerprint) == nil, "the plan is gone once the upload is complete")
        }
    }
}
