import FerryClient
import FerryClientAHC
import FerryHTTP
import FerryTestSupport
import Foundation
import Testing

/// `ferry put`'s HTTPS decisions through the client library: a certificate or a public key the
/// client must not trust ends the upload with `UploadError.untrusted` on the first attempt,
/// however long the retry policy would go on for a network failure.
@Suite("Client trust over HTTPS: CA, host name, validity, pins")
struct ClientTrustTests {
    enum Refusal: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case unknownCA = "a CA the client does not trust"
        case wrongName = "a certificate for another host name"
        case expired = "an expired certificate"
        case pinMismatch = "a key matching no pin"
        var testDescription: String { rawValue }
    }

    static func upload(
        to identity: TestCertificates.Identity,
        _ certificates: TestCertificates,
        pins: [String] = []
    ) async throws -> Result<UploadResult, UploadError> {
        let file = try TestFile(size: 300_000, seed: 31)
        defer { file.remove() }
        return try await TLSTest.withServer(identity) { server in
            let client = try AsyncHTTPClientTransport.makeClient(tls: ClientTLSOptions(caFile: certificates.caCertificate, pins: pins))
            var options = UploadOptions(metadata: [("filename", "t.bin")])
            options.retry.deadline = .seconds(3600)
            let upload = Upload(
                file: file.path, endpoint: URL(string: "https://localhost:\(server.port)/files/")!,
                transport: AsyncHTTPClientTransport(client: client), options: options
            )
            let outcome: Result<UploadResult, UploadError>
            do throws(UploadError) {
                outcome = .success(try await upload.run())
            } catch {
                outcome = .failure(error)
            }
            try await client.shutdown()
            return outcome
        }
    }

    @Test(arguments: Refusal.allCases)
    func refusedAtOnceAndNeverRetried(_ refusal: Refusal) async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let outcome: Result<UploadResult, UploadError>
        switch refusal {
        case .unknownCA: outcome = try await Self.upload(to: certificates.unknownCA, certificates)
        case .wrongName: outcome = try await Self.upload(to: certificates.wrongName, certificates)
        case .expired: outcome = try await Self.upload(to: certificates.expired, certificates)
        case .pinMismatch: outcome = try await Self.upload(to: certificates.leaf, certificates, pins: [certificates.renewedPin])
        }
        guard case .failure(.untrusted(let message)) = outcome else {
            Issue.record("expected an untrusted server, got \(outcome)")
            return
        }
        #expect(!message.isEmpty)
    }

    @Test func aMatchingPinAmongSeveralIsAccepted() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        let outcome = try await Self.upload(to: certificates.leaf, certificates, pins: ["sha256/" + certificates.renewedPin, certificates.leafPin])
        guard case .success(let result) = outcome else {
            Issue.record("expected the upload to succeed, got \(outcome)")
            return
        }
        #expect(result.length == 300_000)
    }

    @Test func aMalformedPinOrAMissingCAFileIsRefusedBeforeAnyRequest() {
        #expect(throws: TransportTrustError.self) { try AsyncHTTPClientTransport.makeClient(tls: ClientTLSOptions(pins: ["not-a-pin"])) }
        #expect(throws: TransportTrustError.self) { try AsyncHTTPClientTransport.makeClient(tls: ClientTLSOptions(caFile: "/nonexistent/ca.pem")) }
    }
}
