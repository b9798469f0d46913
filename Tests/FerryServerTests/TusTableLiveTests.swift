import AsyncHTTPClient
import FerryServer
import FerryTestSupport
import Testing

/// The tus protocol table (`TusProtocolTable`, the rows `TusTableTests` runs in memory) over real
/// connections: a live server over TLS, AsyncHTTPClient speaking HTTP/2 or HTTP/1.1 to it.
@Suite("tus 1.0 protocol table over TLS, HTTP/2 and HTTP/1.1")
struct TusTableLiveTests {
    /// Rows that cannot be said over a transport, with the reason. (None so far: every row of
    /// the table is an ordinary request over both.)
    static let skipped: [TLSTest.Version: [String: String]] = [:]

    /// The server as `TusTableTests.harness()` sets up the engine: at most 10 MiB, no creation rate.
    static func configure(_ configuration: inout FerryServerConfiguration) {
        configuration.engine.maxSize = 10 * 1024 * 1024
        configuration.engine.creationsPerMinutePerClient = nil
    }

    @Test(arguments: TLSTest.Version.allCases)
    func table(_ version: TLSTest.Version) async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        try await TLSTest.withServer(certificates.leaf, configure: Self.configure) { server in
            try await TLSTest.withClient(trusting: certificates.caCertificate, version) { client in
                let transport = LiveTableTransport(client: client, origin: "https://localhost:\(server.port)", version: version)
                var ran = 0
                for rule in TusProtocolTable.cases {
                    if let reason = Self.skipped[version]?[rule.name] {
                        print("skipped over \(version): \(rule.name): \(reason)")
                        continue
                    }
                    do {
                        let mismatches = try await TusProtocolTable.check(rule, over: transport)
                        #expect(mismatches.isEmpty, "\(version): \(rule.name): \(mismatches.joined(separator: "; "))")
                    } catch {
                        Issue.record("\(version): \(rule.name): \(error)")
                    }
                    ran += 1
                }
                #expect(ran + (Self.skipped[version]?.count ?? 0) == TusProtocolTable.cases.count)
                if version == .h2 {
                    // Every row went over the one connection the client opened (over HTTP/1.1 a
                    // refused body closes its connection, so the client opens others).
                    #expect(server.server.census.accepted(.http2) == 1)
                }
            }
        }
    }
}
