import FerryClient
import FerryClientAHC
import FerryNetem
import Foundation
import Testing

/// One emulated network and the uploads that must all finish through it.
struct ProfileCase: Sendable, CustomTestStringConvertible {
    var profile: NetworkProfile
    var uploads: Int
    var size: Int
    var deadline: Duration
    var network: NetworkKind = .cellular

    var testDescription: String { profile.name }
}

/// The profiles of docs `mobile-networks.md`, with rates scaled up so CI stays short; outages
/// keep their real durations (they are what the client must survive).
let profileCases: [ProfileCase] = [
    // Vacuums of 10 s and 3 s (nothing passes, connections stay open) between 6 s of 20 Mbit/s.
    ProfileCase(
        profile: NetworkProfile(
            name: "vacuum",
            schedule: [
                .init(duration: .seconds(6), rate: 20 * 125_000), .init(duration: .seconds(10), rate: 0),
                .init(duration: .seconds(6), rate: 20 * 125_000), .init(duration: .seconds(3), rate: 0),
            ],
            latency: .milliseconds(60)
        ),
        uploads: 3, size: 20 << 20, deadline: .seconds(300)
    ),
    // 40 Mbit/s falling to 3 % for 5 s every 11 s.
    ProfileCase(
        profile: NetworkProfile(
            name: "cliff",
            schedule: [.init(duration: .seconds(6), rate: 40 * 125_000), .init(duration: .seconds(5), rate: 40 * 125_000 * 0.03)],
            latency: .milliseconds(50)
        ),
        uploads: 3, size: 20 << 20, deadline: .seconds(240)
    ),
    ProfileCase(
        profile: NetworkProfile(
            name: "handover",
            schedule: [.init(duration: .seconds(60), rate: 40 * 125_000)],
            latency: .milliseconds(50),
            handover: (interval: .seconds(4), blackout: .milliseconds(1500))
        ),
        uploads: 3, size: 20 << 20, deadline: .seconds(240), network: .wifi
    ),
    ProfileCase(profile: NetworkProfile.named("middlebox")!.scaled(by: 4, fates: false), uploads: 3, size: 20 << 20, deadline: .seconds(240)),
    ProfileCase(profile: NetworkProfile.named("lte-driving", seed: 3)!.scaled(by: 8, fates: false), uploads: 3, size: 20 << 20, deadline: .seconds(240)),
    ProfileCase(profile: NetworkProfile.named("3g")!.scaled(by: 8, fates: false), uploads: 2, size: 20 << 20, deadline: .seconds(240)),
    ProfileCase(profile: NetworkProfile.named("blackhole")!.scaled(by: 4, fates: false), uploads: 2, size: 20 << 20, deadline: .seconds(300)),
]

@Suite("Uploads through emulated mobile networks")
struct NetworkProfileTests {
    /// Every profile over both dialects: the client's policies do not depend on the protocol.
    @Test(arguments: profileCases, UploadDialect.allCases)
    func everyUploadCompletes(_ profileCase: ProfileCase, _ dialect: UploadDialect) async throws {
        let files = try (0..<profileCase.uploads).map { try TestFile(size: profileCase.size, seed: UInt8(10 + $0)) }
        defer { files.forEach { $0.remove() } }
        try await TestServer.with { server in
            let emulator = NetworkEmulator(configuration: .init(targetPort: server.port, profile: profileCase.profile, seed: 42))
            let port = try await emulator.start()
            let client = try AsyncHTTPClientTransport.makeClient()
            let endpoint = URL(string: "http://127.0.0.1:\(port)/files/")!
            let clock = ContinuousClock()
            let started = clock.now
            let outcomes = await withTaskGroup(of: (Int, Result<UploadResult, UploadError>).self) { group in
                for (index, file) in files.enumerated() {
                    group.addTask {
                        var options = UploadOptions(network: profileCase.network)
                        options.retry.deadline = profileCase.deadline
                        options.dialect = dialect
                        let upload = Upload(file: file.path, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client), options: options)
                        do {
                            return (index, .success(try await upload.run()))
                        } catch {
                            return (index, .failure(error as? UploadError ?? .localFile("\(error)")))
                        }
                    }
                }
                return await group.reduce(into: [(Int, Result<UploadResult, UploadError>)]()) { $0.append($1) }
            }
            let elapsed = clock.now - started
            let statistics = await emulator.statistics
            await emulator.stop()
            try await client.shutdown()
            for (index, outcome) in outcomes {
                switch outcome {
                case .success(let result):
                    let stored = Array(try Data(contentsOf: URL(fileURLWithPath: server.directory + "/uploads/" + result.url.lastPathComponent)))
                    #expect(stored == files[index].bytes, "\(profileCase.profile.name) over \(dialect): upload \(index) differs")
                case .failure(let error):
                    Issue.record("\(profileCase.profile.name) over \(dialect): upload \(index) failed: \(error)")
                }
            }
            let ideal = Double(profileCase.uploads * profileCase.size) / profileCase.profile.meanRate
            print("profile \(profileCase.profile.name) over \(dialect): \(profileCase.uploads) x \(profileCase.size >> 20) MiB in \(elapsed) (ideal \(String(format: "%.1f", ideal)) s); emulator \(statistics)")
        }
    }
}
