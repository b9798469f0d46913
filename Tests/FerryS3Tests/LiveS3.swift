import AsyncHTTPClient
import Foundation

@testable import FerryS3

/// The live S3-compatible store the test command started (Ceph RGW or moto_server).
enum LiveS3 {
    static let environment = ProcessInfo.processInfo.environment
    static var configured: Bool { environment["FERRY_TEST_S3_ENDPOINT"] != nil }

    static func location(bucket: String) -> S3Location {
        S3Location(endpoint: URL(string: environment["FERRY_TEST_S3_ENDPOINT"] ?? "http://127.0.0.1:1")!, bucket: bucket)
    }

    static var signer: SigV4Signer {
        SigV4Signer(
            credentials: S3Credentials(
                accessKeyID: environment["FERRY_TEST_S3_ACCESS_KEY"] ?? "testing",
                secretAccessKey: environment["FERRY_TEST_S3_SECRET_KEY"] ?? "testing"
            ),
            region: environment["FERRY_TEST_S3_REGION"] ?? "us-east-1"
        )
    }

    /// Runs `body` with a client for `bucket` (created if needed) and shuts the HTTP client down.
    static func withClient(bucket: String, _ body: (S3Client) async throws -> Void) async throws {
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        var client = S3Client(http: http, location: location(bucket: bucket), signer: signer)
        client.timeout = .seconds(60)
        do {
            try await client.createBucket()
            try await body(client)
        } catch {
            try await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}
