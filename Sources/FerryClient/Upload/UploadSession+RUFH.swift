import Foundation
import HTTPTypes

/// The requests of the RUFH dialect (IETF Resumable Uploads, interop version 8) for the
/// machine's actions; the tus ones are in `UploadSession+Requests.swift`.
extension UploadSession {
    static let rufhInterop = "8"

    /// What a RUFH server offers: creation with a body, deferred lengths, cancellation and
    /// `Content-Digest`, within the `max-size` of its `Upload-Limit`.
    func rufhCapabilities(_ fields: UploadFields) -> ServerCapabilities {
        ServerCapabilities(
            extensions: ["creation", "creation-with-upload", "creation-defer-length", "termination", "checksum"],
            checksumAlgorithms: ["sha256"],
            maxSize: fields.uploadLimitMaxSize,
            instantUpload: fields.instantUpload
        )
    }

    /// `?1` when the request's body ends the upload.
    private func completeField(endingAt end: Int64, declared: Int64?) -> String {
        let ends = declared.map { end == $0 } ?? length.map { end == $0 } ?? false
        return ends ? "?1" : "?0"
    }

    /// RFC 9530 `Content-Digest`: the algorithm's name and the digest as a byte sequence.
    static func contentDigest(_ digest: BodyDigest) -> String {
        switch digest.checksum {
        case .sha256: "sha-256=:\(digest.base64):"
        }
    }

    /// Creation (POST) with the first chunk; the file's type and name as ordinary fields.
    func rufhCreation(_ firstChunk: Range<Int64>?, digest: BodyDigest?) -> TransportRequest {
        var fields = dialectFields(tusVersion: true) + upload.options.headers
        fields[.uploadComplete] = completeField(endingAt: firstChunk?.upperBound ?? 0, declared: nil)
        if let length { fields[.uploadLength] = String(length) }
        let metadata = Dictionary(upload.options.metadata, uniquingKeysWith: { $1 })
        fields[.contentType] = metadata["filetype"] ?? "application/octet-stream"
        if let name = metadata["filename"] {
            let encoded = name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "file"
            fields[.contentDisposition] = "attachment; filename*=UTF-8''\(encoded)"
        }
        if let announcement { fields[.reprDigest] = "sha-256=:\(announcement):" }
        var body: RequestBody?
        if let firstChunk {
            if let digest { fields[.contentDigest] = Self.contentDigest(digest) }
            body = .file(path: upload.path, range: fileRange(firstChunk))
        }
        return TransportRequest(method: .post, url: upload.endpoint, headerFields: fields, body: body)
    }

    /// An append (PATCH, `application/partial-upload`); `declared` is the length a stream that
    /// ended declares with its last bytes.
    func rufhAppend(_ url: URL, _ range: Range<Int64>, declaring declared: Int64?, digest: BodyDigest?) -> TransportRequest {
        var request = self.request(.patch, url)
        request.headerFields[.uploadOffset] = String(range.lowerBound)
        request.headerFields[.contentType] = "application/partial-upload"
        request.headerFields[.uploadComplete] = completeField(endingAt: range.upperBound, declared: declared)
        if let declared { request.headerFields[.uploadLength] = String(declared) }
        if let digest { request.headerFields[.contentDigest] = Self.contentDigest(digest) }
        request.body = .file(path: upload.path, range: fileRange(range))
        return request
    }
}
