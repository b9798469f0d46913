import Foundation

/// The S3 calls Ferry's object store needs, as requests to build (pure: no I/O). The executor
/// (`S3Client`) signs and sends them; the answers are parsed by `S3Response`.
public enum S3Operation: Sendable, Equatable {
    case putObject(key: String, length: Int64)
    case getObject(key: String, range: Range<Int64>?)
    case headObject(key: String)
    case deleteObject(key: String)
    case createMultipartUpload(key: String)
    case uploadPart(key: String, uploadID: String, partNumber: Int, length: Int64)
    /// A part made server-side from `sourceKey` (a byte range of it, or all of it).
    case uploadPartCopy(key: String, uploadID: String, partNumber: Int, sourceKey: String, sourceRange: Range<Int64>?)
    /// A server-side copy of a whole object (up to 5 GiB).
    case copyObject(key: String, sourceKey: String)
    case listParts(key: String, uploadID: String, marker: Int?)
    case completeMultipartUpload(key: String, uploadID: String, parts: [S3Part])
    case abortMultipartUpload(key: String, uploadID: String)
    /// ListObjectsV2: keys starting with `prefix`, a page at a time.
    case listObjects(prefix: String, continuation: String?)
    /// In-progress multipart uploads of keys starting with `prefix`, a page at a time.
    case listMultipartUploads(prefix: String, keyMarker: String?, uploadIDMarker: String?)
    /// For set-up scripts and tests; the store itself never creates buckets.
    case createBucket
}

extension S3Operation {
    /// Addressed to the bucket itself rather than to a key.
    var isBucketLevel: Bool {
        switch self {
        case .createBucket, .listObjects, .listMultipartUploads: true
        default: false
        }
    }
}

/// One part of a multipart upload as the catalog keeps it.
public struct S3Part: Sendable, Equatable, Codable {
    public var number: Int
    public var size: Int64
    /// Without quotes (RGW quotes some ETags and not others).
    public var etag: String

    public init(number: Int, size: Int64, etag: String) {
        self.number = number
        self.size = size
        self.etag = S3Part.unquoted(etag)
    }

    static func unquoted(_ etag: String) -> String {
        etag.trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
    }
}

/// Where a bucket lives: path-style addressing (`endpoint/bucket/key`), which RGW, moto and
/// every self-hosted S3 accept.
public struct S3Location: Sendable, Equatable {
    public var endpoint: URL
    public var bucket: String

    public init(endpoint: URL, bucket: String) {
        self.endpoint = endpoint
        self.bucket = bucket
    }
}

/// A request ready to sign: method, URL, headers (without the signature), and whether a
/// body of `bodyLength` bytes follows.
public struct S3Request: Sendable {
    public var method: String
    public var url: URL
    public var headers: [(String, String)]
    public var bodyLength: Int64?
    /// An XML body built here (CompleteMultipartUpload); other bodies come from the caller.
    public var body: [UInt8]?

    public init(_ operation: S3Operation, at location: S3Location) {
        var query: [(String, String?)] = []
        var headers: [(String, String)] = []
        var method = "GET"
        var key = ""
        bodyLength = nil
        body = nil
        switch operation {
        case .putObject(let name, let length):
            (method, key, bodyLength) = ("PUT", name, length)
        case .getObject(let name, let range):
            key = name
            if let range, !range.isEmpty { headers.append(("Range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)")) }
        case .headObject(let name):
            (method, key) = ("HEAD", name)
        case .deleteObject(let name):
            (method, key) = ("DELETE", name)
        case .createMultipartUpload(let name):
            (method, key) = ("POST", name)
            query = [("uploads", nil)]
        case .uploadPart(let name, let uploadID, let number, let length):
            (method, key, bodyLength) = ("PUT", name, length)
            query = [("partNumber", String(number)), ("uploadId", uploadID)]
        case .uploadPartCopy(let name, let uploadID, let number, let source, let range):
            (method, key) = ("PUT", name)
            query = [("partNumber", String(number)), ("uploadId", uploadID)]
            headers.append(("x-amz-copy-source", "/\(location.bucket)/\(Self.encodeKey(source))"))
            if let range, !range.isEmpty {
                headers.append(("x-amz-copy-source-range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)"))
            }
        case .copyObject(let name, let source):
            (method, key) = ("PUT", name)
            headers.append(("x-amz-copy-source", "/\(location.bucket)/\(Self.encodeKey(source))"))
        case .listParts(let name, let uploadID, let marker):
            key = name
            query = [("uploadId", uploadID)] + (marker.map { [("part-number-marker", String($0))] } ?? [])
        case .completeMultipartUpload(let name, let uploadID, let parts):
            (method, key) = ("POST", name)
            query = [("uploadId", uploadID)]
            let xml = "<CompleteMultipartUpload>"
                + parts.sorted { $0.number < $1.number }.map { "<Part><PartNumber>\($0.number)</PartNumber><ETag>\"\($0.etag)\"</ETag></Part>" }.joined()
                + "</CompleteMultipartUpload>"
            body = Array(xml.utf8)
            bodyLength = Int64(xml.utf8.count)
            headers.append(("Content-Type", "application/xml"))
        case .abortMultipartUpload(let name, let uploadID):
            (method, key) = ("DELETE", name)
            query = [("uploadId", uploadID)]
        case .listObjects(let prefix, let continuation):
            query = [("list-type", "2"), ("prefix", prefix)] + (continuation.map { [("continuation-token", $0)] } ?? [])
        case .listMultipartUploads(let prefix, let keyMarker, let uploadIDMarker):
            query = [("uploads", nil), ("prefix", prefix)]
                + (keyMarker.map { [("key-marker", $0)] } ?? []) + (uploadIDMarker.map { [("upload-id-marker", $0)] } ?? [])
        case .createBucket:
            method = "PUT"
        }
        self.method = method
        self.headers = headers
        var text = location.endpoint.absoluteString
        while text.hasSuffix("/") { text.removeLast() }
        text += "/" + SigV4Signer.uriEncode(location.bucket) + (operation.isBucketLevel ? "" : "/" + Self.encodeKey(key))
        if !query.isEmpty {
            text += "?" + query.map { name, value in value.map { "\(name)=\(SigV4Signer.uriEncode($0))" } ?? name }.joined(separator: "&")
        }
        self.url = URL(string: text)!
    }

    /// A key's path form: each `/`-separated segment URI-encoded.
    static func encodeKey(_ key: String) -> String {
        key.split(separator: "/", omittingEmptySubsequences: false).map { SigV4Signer.uriEncode(String($0)) }.joined(separator: "/")
    }
}
