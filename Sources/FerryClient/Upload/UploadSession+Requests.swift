import Foundation
import HTTPTypes

/// A request body's digest, computed by the session for the checksum the machine chose.
struct BodyDigest: Sendable, Equatable {
    var checksum: RequestChecksum
    /// The digest, Base64.
    var base64: String
}

/// The requests for the machine's actions: the shared fields and the tus requests (the RUFH
/// ones are in `UploadSession+RUFH.swift`).
extension UploadSession {
    /// The request that performs `action` (nil for an action that is not a request). The
    /// checksum the machine chose for its body is computed here, off the cooperative pool.
    func request(for action: UploadMachine.Action) async -> TransportRequest? {
        switch action {
        case .discover:
            return TransportRequest(method: .options, url: upload.endpoint, headerFields: dialectFields(tusVersion: false) + upload.options.headers)
        case .create(let firstChunk, let checksum):
            var digest: BodyDigest?
            if let firstChunk { digest = await self.digest(checksum, of: firstChunk) }
            return upload.options.dialect == .rufh ? rufhCreation(firstChunk, digest: digest) : creation(firstChunk, digest: digest)
        case .locate(let url):
            return request(.head, url)
        case .send(let url, let range, let checksum):
            return append(url, range, declaring: nil, digest: await digest(checksum, of: range))
        case .sendFinal(let url, let range, let length, let checksum):
            return append(url, range, declaring: length, digest: await digest(checksum, of: range))
        default:
            return nil
        }
    }

    /// The digest of `range` (of this upload) for `checksum`; nil for no checksum, or when the
    /// range cannot be read (the request then goes without one).
    func digest(_ checksum: RequestChecksum?, of range: Range<Int64>) async -> BodyDigest? {
        guard let checksum, let base64 = await FileRange.digest(checksum, path: upload.path, range: fileRange(range)) else { return nil }
        return BodyDigest(checksum: checksum, base64: base64)
    }

    /// A body-less request with the dialect's fields and the caller's.
    func request(_ method: HTTPRequest.Method, _ url: URL) -> TransportRequest {
        TransportRequest(method: method, url: url, headerFields: dialectFields(tusVersion: true) + upload.options.headers)
    }

    /// The fields every request carries: the dialect's, and for the server's statistics who
    /// the client is and the network it believes it is on (unless the caller set them).
    func dialectFields(tusVersion: Bool) -> HTTPFields {
        var fields = HTTPFields()
        switch upload.options.dialect {
        case .tus: if tusVersion { fields[.tusResumable] = "1.0.0" }
        case .rufh: fields[.uploadDraftInteropVersion] = Self.rufhInterop
        }
        let callers = upload.options.headers
        if callers[.userAgent] == nil { fields[.userAgent] = Self.userAgent }
        if callers[.ferryNetwork] == nil, upload.options.network != .unknown { fields[.ferryNetwork] = upload.options.network.rawValue }
        return fields
    }

    static let userAgent = "ferry-client/1 (FerryClient)"

    /// tus creation (POST), with the first chunk when the machine sends it along.
    private func creation(_ firstChunk: Range<Int64>?, digest: BodyDigest?) -> TransportRequest {
        var fields = dialectFields(tusVersion: true)
        if let length { fields[.uploadLength] = String(length) } else { fields[.uploadDeferLength] = "1" }
        fields += upload.options.headers
        if upload.part != nil || upload.split != nil {
            fields[.uploadConcat] = "partial"
        } else if let metadata = upload.options.tusMetadata {
            fields[.uploadMetadata] = metadata
        }
        if let announcement { fields[.reprDigest] = "sha-256=:\(announcement):" }
        var body: RequestBody?
        if let firstChunk {
            fields[.contentType] = "application/offset+octet-stream"
            if let digest { fields[.uploadChecksum] = Self.uploadChecksum(digest) }
            body = .file(path: upload.path, range: fileRange(firstChunk))
        }
        return TransportRequest(method: .post, url: upload.endpoint, headerFields: fields, body: body)
    }

    /// An append: tus PATCH, or RUFH's; `declared` is the length a stream that ended declares
    /// with its last bytes.
    private func append(_ url: URL, _ range: Range<Int64>, declaring declared: Int64?, digest: BodyDigest?) -> TransportRequest {
        if upload.options.dialect == .rufh { return rufhAppend(url, range, declaring: declared, digest: digest) }
        var request = self.request(.patch, url)
        request.headerFields[.uploadOffset] = String(range.lowerBound)
        request.headerFields[.contentType] = "application/offset+octet-stream"
        if let declared { request.headerFields[.uploadLength] = String(declared) }
        if let digest { request.headerFields[.uploadChecksum] = Self.uploadChecksum(digest) }
        request.body = .file(path: upload.path, range: fileRange(range))
        return request
    }

    /// tus `Upload-Checksum`: the algorithm's name and the Base64 digest.
    static func uploadChecksum(_ digest: BodyDigest) -> String {
        switch digest.checksum {
        case .sha256: "sha256 " + digest.base64
        }
    }
}

extension UploadOptions {
    /// tus `Upload-Metadata`: the pairs, values Base64-encoded; nil when there are none.
    var tusMetadata: String? {
        guard !metadata.isEmpty else { return nil }
        return metadata.map { "\($0.0) \(Data($0.1.utf8).base64EncodedString())" }.joined(separator: ",")
    }
}
