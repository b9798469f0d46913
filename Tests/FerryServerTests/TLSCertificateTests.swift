import AsyncHTTPClient
import FerryCore
import FerryHTTP
import FerryServer
import FerryTestSupport
import Foundation
import Logging
import NIOCore
import Testing

/// The server's certificate: start-up refuses files it cannot use, a reload (SIGHUP) serves a
/// renewed certificate to new connections without cutting an upload in flight, and a client
/// trusting the test CA refuses the certificates it should.
@Suite("Live TLS: certificates, reload, refusals")
struct TLSCertificateTests {
    /// A body whose chunks the test hands over one at a time; `asked` says how many chunks the
    /// client has asked for, so the test knows the request is under way without sleeping.
    struct HeldBody: AsyncSequence, Sendable {
        let chunks: AsyncStream<ByteBuffer>
        let asked: AsyncStream<Int>.Continuation

        struct AsyncIterator: AsyncIteratorProtocol {
            var chunks: AsyncStream<ByteBuffer>.AsyncIterator
            let asked: AsyncStream<Int>.Continuation
            var count = 0

            mutating func next() async -> ByteBuffer? {
                count += 1
                asked.yield(count)
                return await chunks.next()
            }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(chunks: chunks.makeAsyncIterator(), asked: asked) }
    }

    static func copy(_ from: String, to: String) throws {
        try Data(contentsOf: URL(fileURLWithPath: from)).write(to: URL(fileURLWithPath: to), options: .atomic)
    }

    @Test func aReloadServesTheRenewedCertificateAndKeepsUploadsInFlight() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        // The server reads files of its own, which the test replaces as a renewal would.
        let chain = certificates.directory + "/served.pem"
        let key = certificates.directory + "/served.key"
        try Self.copy(certificates.leaf.chain, to: chain)
        try Self.copy(certificates.leaf.key, to: key)
        let ca = certificates.caCertificate
        try await TestServer.with(configure: {
            $0.http.transport.tls = TLSFiles(certificateChain: chain, privateKey: key)
            $0.statistics = nil
        }) { server in
            let store = try #require(server.server.certificates)
            #expect(try TLSTest.pin(await TLSTest.peerCertificate(port: server.port, trusting: ca)) == certificates.leafPin)
            try await TLSTest.withClient(trusting: ca, .h2) { client in
                let origin = "https://localhost:\(server.port)"
                let chunk = 64 << 10
                let total = 4 * chunk
                let (created, _) = try await TLSLiveTests.exchange(
                    client, TLSLiveTests.request(origin, .POST, "/files/", TLSLiveTests.tusFields + [("Upload-Length", String(total))])
                )
                let path = try #require(created.headers.first(name: "Location").flatMap(TusProtocolTable.path(of:)))

                // A PATCH on the same HTTP/2 connection whose body stops after its first chunk.
                let (chunks, feed) = AsyncStream<ByteBuffer>.makeStream()
                let (asked, askedContinuation) = AsyncStream<Int>.makeStream()
                var patch = TLSLiveTests.request(
                    origin, .PATCH, path, TLSLiveTests.tusFields + [("Content-Type", "application/offset+octet-stream"), ("Upload-Offset", "0")]
                )
                patch.body = .stream(HeldBody(chunks: chunks, asked: askedContinuation), length: .known(Int64(total)))
                let content = TLSLiveTests.pattern(total)
                feed.yield(ByteBuffer(bytes: content[0..<chunk]))
                let held = patch
                async let answer = client.execute(held, timeout: .seconds(30))
                for await count in asked where count == 2 { break }  // the first chunk is sent

                // A key file that is not a key: refused, the certificate in use stays.
                try Data("not a key\n".utf8).write(to: URL(fileURLWithPath: key), options: .atomic)
                let refused = await #expect(throws: ConfigurationError.self) { try await store.reload() }
                #expect(refused?.setting == "tls-key", "\(String(describing: refused))")
                #expect(try TLSTest.pin(await TLSTest.peerCertificate(port: server.port, trusting: ca)) == certificates.leafPin)

                // The renewal: new connections get it.
                try Self.copy(certificates.renewed.chain, to: chain)
                try Self.copy(certificates.renewed.key, to: key)
                let summary = try await store.reload()
                #expect(summary.chainLength == 1 && store.summary == summary)
                #expect(try TLSTest.pin(await TLSTest.peerCertificate(port: server.port, trusting: ca)) == certificates.renewedPin)
                let renewed = try await TLSTest.peerCertificate(port: server.port, trusting: ca)
                #expect(renewed.serialNumber.drop { $0 == 0 }.reduce(0) { $0 << 8 | Int($1) } == certificates.renewed.serial)

                // The upload in flight finishes on the connection it started on.
                for start in stride(from: chunk, to: total, by: chunk) { feed.yield(ByteBuffer(bytes: content[start..<start + chunk])) }
                feed.finish()
                let response = try await answer
                #expect(response.status == .noContent && response.version == .http2)
                #expect(response.headers.first(name: "Upload-Offset") == String(total))
                let (_, stored) = try await TLSLiveTests.exchange(client, TLSLiveTests.request(origin, .GET, path, TLSLiveTests.tusFields))
                #expect(TLSLiveTests.same(stored, content))
                #expect(server.server.census.accepted(.http2) == 1, "the client kept its connection across the reload")
            }
            // A new client connection trusts the renewed certificate as it did the old one.
            try await TLSTest.withClient(trusting: ca, .h2) { client in
                let (options, _) = try await TLSLiveTests.exchange(client, TLSLiveTests.request("https://localhost:\(server.port)", .OPTIONS, "/files/", []))
                #expect(options.status == .noContent && options.version == .http2)
            }
            #expect(server.server.census.accepted(.http2) == 2)
        }
    }

    /// Start-up with files the server cannot use: the error names the flag.
    @Test(arguments: [
        ("a missing certificate file", "missing.pem", "leaf.key", "tls-cert"),
        ("a certificate file that is not PEM", "leaf.key", "leaf.key", "tls-cert"),
        ("a missing key file", "leaf.pem", "missing.key", "tls-key"),
        ("a key that does not match the certificate", "leaf.pem", "renewed.key", "tls-key"),
    ])
    func startUpRefusesFilesItCannotUse(_ name: String, _ chain: String, _ key: String, _ setting: String) async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let data = certificates.directory + "/data"
        var configuration = FerryServerConfiguration(dataDirectory: data)
        configuration.http.port = 0
        configuration.ioThreads = 1
        configuration.http.transport.tls = TLSFiles(
            certificateChain: certificates.directory + "/" + chain, privateKey: certificates.directory + "/" + key
        )
        let error = #expect(throws: ConfigurationError.self, "\(name)") {
            _ = try FerryServer(configuration: configuration, logger: Logger(label: "ferry-tls-test"))
        }
        #expect(error?.setting == setting, "\(name): \(String(describing: error))")
    }

    /// The test certificates a client must refuse, and the ones it must accept.
    @Test(arguments: [
        ("leaf", true), ("leafWithCA", true), ("expired", false), ("wrongName", false), ("unknownCA", false),
    ])
    func aClientTrustingTheTestCA(_ identityName: String, _ accepted: Bool) async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let identities = [
            "leaf": certificates.leaf, "leafWithCA": certificates.leafWithCA, "expired": certificates.expired,
            "wrongName": certificates.wrongName, "unknownCA": certificates.unknownCA,
        ]
        let identity = try #require(identities[identityName])
        try await TLSTest.withServer(identity) { server in
            // A refused handshake fails the request at once instead of being retried until its deadline.
            try await TLSTest.withClient(trusting: certificates.caCertificate, .h2, configure: { $0.connectionPool.retryConnectionEstablishment = false }) { client in
                let request = TLSLiveTests.request("https://localhost:\(server.port)", .OPTIONS, "/files/", [])
                if accepted {
                    let (response, _) = try await TLSLiveTests.exchange(client, request)
                    #expect(response.status == .noContent && response.version == .http2)
                } else {
                    await #expect(throws: (any Error).self, "\(identityName) must be refused") { try await client.execute(request, timeout: .seconds(10)) }
                }
            }
            #expect(server.server.certificates?.summary.chainLength == (identityName == "leafWithCA" ? 2 : 1))
        }
    }
}
