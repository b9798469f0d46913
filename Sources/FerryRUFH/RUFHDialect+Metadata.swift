import FerryCore
import FerryProtocol
import Foundation
import HTTPTypes

extension RUFHDialect {
    /// Metadata from ordinary headers: `Content-Type` as `filetype`, the `Content-Disposition`
    /// file name as `filename`.
    static func metadata(_ fields: HTTPFields) throws(FerryError) -> UploadMetadata {
        var metadata = UploadMetadata()
        if let type = fields.mediaType, !type.isEmpty, type != partialUploadType, type != "application/octet-stream" {
            try metadata.set("filetype", type)
        }
        if let disposition = fields[.contentDisposition], let name = filename(disposition) {
            try metadata.set("filename", name)
        }
        return metadata
    }

    /// `filename*=UTF-8''…` (RFC 6266/8187) or `filename="…"` of a `Content-Disposition`.
    static func filename(_ disposition: String) -> String? {
        var plain: String?
        for part in disposition.split(separator: ";").dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { continue }
            switch pair[0].lowercased() {
            case "filename*":
                let value = pair[1]
                guard let quote = value.range(of: "''") else { continue }
                let charset = value[..<quote.lowerBound].lowercased()
                if charset == "utf-8", let decoded = String(value[quote.upperBound...]).removingPercentEncoding, !decoded.isEmpty {
                    return decoded
                }
            case "filename":
                var value = pair[1]
                if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
                if !value.isEmpty { plain = value.replacingOccurrences(of: "\\\"", with: "\"") }
            default:
                continue
            }
        }
        return plain
    }
}

/// RFC 9530 digests of one request: `Content-Digest` (this body), `Repr-Digest` (the whole
/// upload, checked when this request completes it) and `Want-Repr-Digest`.
struct Digests {
    var content: ChecksumExpectation?
    var representation: [UInt8]?
    var wantsRepresentation = false

    init(_ fields: HTTPFields) throws(FerryError) {
        if let text = fields[.contentDigest] {
            content = DigestAlgorithm.checksum(from: try StructuredField.digests(text, "Content-Digest"))
        }
        if let text = fields[.reprDigest] {
            representation = try StructuredField.digests(text, "Repr-Digest")["sha-256"]
        }
        if let text = fields[.wantReprDigest], let wanted = StructuredField.wanted(text) {
            wantsRepresentation = wanted.contains("sha-256")
        }
    }
}
