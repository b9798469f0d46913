@testable import FerryClient
import Foundation
import HTTPTypes
import Synchronization
import Testing

/// A tus or RUFH server in memory: answers every request at once and records it.
final class RecordingTransport: UploadTransport {
    let requests = Mutex<[TransportRequest]>([])
    let discovery: HTTPFields

    init(discovery: HTTPFields) {
        self.discovery = discovery
    }

    func send(_ request: TransportRequest, progress: @escaping @Sendable (Int64) -> Void) async throws -> TransportResponse {
        requests.withLock { $0.append(request) }
        let stored = (request.headerFields[.uploadOffset].flatMap { Int64($0) } ?? 0) + (request.body?.count ?? 0)
        progress(request.body?.count ?? 0)
        switch request.method {
        case .options:
            return TransportResponse(status: .noContent, headerFields: discovery)
        case .post:
            return TransportResponse(status: .created, headerFields: [.location: "/files/1", .uploadOffset: String(stored)])
        default:
            return TransportResponse(status: .noContent, headerFields: [.uploadOffset: String(stored)])
        }
    }
}

@Suite("The requests an upload sends")
struct UploadRequestsTests {
    /// SHA-256 of "abc", Base64.
    static let abcDigest = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    static let tusServer: HTTPFields = [
        .tusExtension: "creation,creation-with-upload,termination,checksum", .tusChecksumAlgorithm: "sha1,md5,sha256",
    ]

    static func file(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-requests-\(UUID().uuidString)").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func upload(_ path: String, server: HTTPFields, _ configure: (inout UploadOptions) -> Void = { _ in }) async throws -> [TransportRequest] {
        let transport = RecordingTransport(discovery: server)
        var options = UploadOptions(metadata: [("filename", "a.txt")], headers: [.authorization: "Bearer t"])
        // The exact sequence is the subject: no second, raced OPTIONS on a loaded machine.
        options.stall.raceAfter = .seconds(3600)
        configure(&options)
        _ = try await Upload(file: path, endpoint: URL(string: "http://127.0.0.1:1/files/")!, transport: transport, options: options).run()
        return transport.requests.withLock { $0 }
    }

    @Test func aTusCreationCarriesTheFileAndItsChecksum() async throws {
        let path = try Self.file("abc")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let requests = try await Self.upload(path, server: Self.tusServer)
        #expect(requests.map(\.method) == [.options, .post])
        let creation = requests[1].headerFields
        #expect(creation[.tusResumable] == "1.0.0")
        #expect(creation[.uploadLength] == "3")
        #expect(creation[.uploadMetadata] == "filename YS50eHQ=")
        #expect(creation[.authorization] == "Bearer t")
        #expect(creation[.userAgent] == UploadSession.userAgent)
        #expect(creation[.uploadChecksum] == "sha256 \(Self.abcDigest)")
        #expect(requests[1].body == .file(path: path, range: 0..<3))
    }

    @Test func withoutChecksumsNoneIsComputed() async throws {
        let path = try Self.file("abc")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let requests = try await Self.upload(path, server: Self.tusServer) { $0.checksums = false }
        #expect(requests[1].headerFields[.uploadChecksum] == nil)
    }

    @Test func aRUFHCreationCarriesAContentDigest() async throws {
        let path = try Self.file("abc")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let requests = try await Self.upload(path, server: [:]) { $0.dialect = .rufh }
        #expect(requests.map(\.method) == [.options, .post])
        let creation = requests[1].headerFields
        #expect(creation[.uploadDraftInteropVersion] == UploadSession.rufhInterop)
        #expect(creation[.uploadComplete] == "?1")
        #expect(creation[.contentDisposition] == "attachment; filename*=UTF-8''a%2Etxt")
        #expect(creation[.contentDigest] == "sha-256=:\(Self.abcDigest):")
    }

    @Test func aCallersUserAgentReplacesTheClients() async throws {
        let path = try Self.file("abc")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let requests = try await Self.upload(path, server: Self.tusServer) { $0.headers[.userAgent] = "app/2" }
        #expect(requests[1].headerFields[values: .userAgent] == ["app/2"])
    }

    @Test func aRangeIsHashedFromItsOffset() async throws {
        let path = try Self.file("xxabcyy")
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(await FileRange.digest(.sha256, path: path, range: 2..<5) == Self.abcDigest)
        #expect(await FileRange.digest(.sha256, path: path, range: 2..<50) == nil, "a range past the end of the file")
    }
}
