import AsyncHTTPClient
import FerryCore
import Foundation
import NIOCore
import NIOHTTP1

/// The `pre-create` and `pre-finish` callbacks over HTTP: a JSON POST, bounded in time and in
/// the size of the answer read back.
public struct HTTPBusinessCallbacks: BusinessCallbacks {
    let http: CallbackHTTP
    /// The longest answer read; a business result header must stay small.
    static let maxAnswer = 64 * 1024
    static let maxResult = 4 * 1024

    public init(http: CallbackHTTP) {
        self.http = http
    }

    /// Every URL through AsyncHTTPClient.
    public init(http: HTTPClient) {
        self.init(http: CallbackHTTP(client: http))
    }

    public func preCreate(_ request: PreCreateRequest, url: String, timeout: Duration) async throws(FerryError) -> PreCreateDecision {
        var metadata: [String: String] = [:]
        for entry in request.metadata.entries {
            metadata[entry.key] = entry.value.flatMap { String(validating: $0, as: UTF8.self) } ?? ""
        }
        let body = PreCreateBody(scenario: request.scenario, owner: request.owner, length: request.length, metadata: metadata)
        let (status, answer) = try await post(url, json: (try? JSONEncoder().encode(body)) ?? Data(), timeout: timeout)
        switch status {
        case 200..<300:
            guard !answer.isEmpty else { return .accept(metadata: [:]) }
            guard let decision = try? JSONDecoder().decode(PreCreateAnswer.self, from: answer) else {
                throw FerryError(.callbackFailed, "the pre-create callback answered something other than a JSON decision")
            }
            if let reject = decision.reject {
                let code = reject.status.flatMap { (400..<500).contains($0) ? $0 : nil } ?? 403
                return .reject(status: code, message: reject.message ?? "refused by the business system")
            }
            return .accept(metadata: decision.metadata ?? [:])
        case 400..<500:
            let message = String(decoding: answer.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return .reject(status: status, message: message.isEmpty ? "refused by the business system" : message)
        default:
            throw FerryError(.callbackFailed, "the pre-create callback answered \(status)")
        }
    }

    public func preFinish(_ upload: UploadRecord, location: String, url: String, timeout: Duration) async throws(FerryError) -> String {
        let body = PreFinishPayload(upload: UploadDescription(upload, location: location)).json()
        let (status, answer) = try await post(url, json: body, timeout: timeout)
        guard (200..<300).contains(status) else {
            throw FerryError(.callbackFailed, "the pre-finish callback answered \(status)")
        }
        guard let json = Self.compactASCII(answer) else {
            throw FerryError(.callbackFailed, "the pre-finish callback did not answer a JSON object")
        }
        guard json.utf8.count <= Self.maxResult else {
            throw FerryError(.callbackFailed, "the pre-finish result is larger than \(Self.maxResult) bytes")
        }
        return json
    }

    static let headers: HTTPHeaders = ["Content-Type": "application/json", "User-Agent": "ferry"]

    /// POSTs `json`; returns the status and at most `maxAnswer` bytes of the answer.
    func post(_ url: String, json: Data, timeout: Duration) async throws(FerryError) -> (Int, Data) {
        do {
            var (status, answer) = try await http.post(url, headers: Self.headers, body: ByteBuffer(bytes: json), timeout: timeout, maxAnswer: Self.maxAnswer)
            return (status, Data(answer.readBytes(length: answer.readableBytes) ?? []))
        } catch {
            throw FerryError(.callbackFailed, "the callback at \(url) failed or timed out", underlying: error)
        }
    }

    /// A JSON object written compactly, with every non-ASCII character escaped, so that it can
    /// travel in a header (`CompactJSON`); nil when `data` is not a JSON object.
    static func compactASCII(_ data: Data) -> String? {
        CompactJSON.objectASCII(data)
    }
}

struct PreCreateBody: Encodable {
    var scenario: String
    var owner: String?
    var length: Int64?
    var metadata: [String: String]
}

struct PreCreateAnswer: Decodable {
    struct Reject: Decodable {
        var status: Int?
        var message: String?
    }

    var reject: Reject?
    var metadata: [String: String]?
}
