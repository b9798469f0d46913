import Foundation

#if canImport(FoundationXML)
import FoundationXML
#endif

/// What the S3 answers Ferry reads say, parsed from their XML (pure).
public enum S3Response {
    /// `<Error><Code>…</Code><Message>…</Message></Error>`.
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public var status: Int
        public var code: String
        public var message: String

        public init(status: Int, code: String, message: String) {
            self.status = status
            self.code = code
            self.message = message
        }

        /// The multipart upload no longer exists (AWS says NoSuchUpload; RGW answers ListParts
        /// on a finished or unknown upload with NoSuchKey).
        public var uploadGone: Bool { code == "NoSuchUpload" || code == "NoSuchKey" }

        public var description: String { "S3 \(status) \(code): \(message)" }
    }

    public static func failure(status: Int, body: [UInt8]) -> Failure {
        let fields = XMLFields.parse(body, keep: ["Code", "Message"])
        return Failure(
            status: status, code: fields.first { $0.name == "Code" }?.value ?? "HTTP\(status)",
            message: fields.first { $0.name == "Message" }?.value ?? ""
        )
    }

    /// CreateMultipartUpload: the `UploadId`.
    public static func uploadID(_ body: [UInt8]) -> String? {
        XMLFields.parse(body, keep: ["UploadId"]).first?.value
    }

    /// ListParts: the parts of this page, and the marker of the next page when truncated.
    public static func parts(_ body: [UInt8]) -> (parts: [S3Part], nextMarker: Int?) {
        let fields = XMLFields.parse(body, keep: ["PartNumber", "ETag", "Size", "IsTruncated", "NextPartNumberMarker"])
        var parts: [S3Part] = []
        var number: Int?
        var etag: String?
        var size: Int64?
        for field in fields {
            switch field.name {
            case "PartNumber": number = Int(field.value)
            case "ETag": etag = field.value
            case "Size": size = Int64(field.value)
            default: break
            }
            if let n = number, let e = etag, let s = size {
                parts.append(S3Part(number: n, size: s, etag: e))
                (number, etag, size) = (nil, nil, nil)
            }
        }
        let truncated = fields.first { $0.name == "IsTruncated" }?.value == "true"
        let marker = fields.first { $0.name == "NextPartNumberMarker" }.flatMap { Int($0.value) }
        return (parts, truncated ? marker : nil)
    }

    /// ListObjectsV2: the keys of this page, and the token of the next page when truncated.
    public static func objects(_ body: [UInt8]) -> (keys: [String], continuation: String?) {
        let fields = XMLFields.parse(body, keep: ["Key", "IsTruncated", "NextContinuationToken"])
        let truncated = fields.first { $0.name == "IsTruncated" }?.value == "true"
        let token = fields.first { $0.name == "NextContinuationToken" }?.value
        return (fields.filter { $0.name == "Key" }.map(\.value), truncated ? token : nil)
    }

    /// ListMultipartUploads: (key, upload id) pairs of this page, and the markers of the next page.
    public static func multipartUploads(_ body: [UInt8]) -> (uploads: [(key: String, uploadID: String)], next: (key: String, uploadID: String)?) {
        let fields = XMLFields.parse(body, keep: ["Key", "UploadId", "IsTruncated", "NextKeyMarker", "NextUploadIdMarker"])
        var uploads: [(key: String, uploadID: String)] = []
        // Each <Upload> holds one Key and one UploadId, in either order.
        var key: String?
        var id: String?
        for field in fields {
            if field.name == "Key" { key = field.value }
            if field.name == "UploadId" { id = field.value }
            if let currentKey = key, let currentID = id {
                uploads.append((currentKey, currentID))
                (key, id) = (nil, nil)
            }
        }
        let truncated = fields.first { $0.name == "IsTruncated" }?.value == "true"
        let nextKey = fields.first { $0.name == "NextKeyMarker" }?.value
        let nextID = fields.first { $0.name == "NextUploadIdMarker" }?.value
        guard truncated, let nextKey, let nextID else { return (uploads, nil) }
        return (uploads, (nextKey, nextID))
    }

    /// UploadPartCopy: the new part's ETag (RGW sends it without quotes).
    public static func copyETag(_ body: [UInt8]) -> String? {
        XMLFields.parse(body, keep: ["ETag"]).first.map { S3Part.unquoted($0.value) }
    }
}

/// Collects the text of the named elements, in document order.
final class XMLFields: NSObject, XMLParserDelegate {
    private let keep: Set<String>
    private var current: String?
    private var text = ""
    private(set) var fields: [(name: String, value: String)] = []

    private init(keep: Set<String>) {
        self.keep = keep
    }

    static func parse(_ body: [UInt8], keep: Set<String>) -> [(name: String, value: String)] {
        let collector = XMLFields(keep: keep)
        let parser = XMLParser(data: Data(body))
        parser.delegate = collector
        _ = parser.parse()
        return collector.fields
    }

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        if keep.contains(name) {
            current = name
            text = ""
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if current != nil { text += string }
    }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        if name == current {
            fields.append((name, text.trimmingCharacters(in: .whitespacesAndNewlines)))
            current = nil
        }
    }
}
