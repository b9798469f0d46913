import Foundation
import HTTPTypes

/// Where a request body comes from.
public enum RequestBody: Sendable, Equatable {
    /// A byte range of a file, streamed with bounded memory.
    case file(path: String, range: Range<Int64>)
    /// Bytes in memory (small bodies only, such as a telemetry report).
    case bytes([UInt8])

    /// The body's length in bytes.
    public var count: Int64 {
        switch self {
        case .file(_, let range): Int64(range.count)
        case .bytes(let bytes): Int64(bytes.count)
        }
    }
}

/// One HTTP request as the uploader builds it.
public struct TransportRequest: Sendable {
    public var method: HTTPRequest.Method
    public var url: URL
    /// The request's fields, in the order they are sent.
    public var headerFields: HTTPFields
    public var body: RequestBody?

    public init(method: HTTPRequest.Method, url: URL, headerFields: HTTPFields = [:], body: RequestBody? = nil) {
        self.method = method
        self.url = url
        self.headerFields = headerFields
        self.body = body
    }
}

/// The answer: its status, its fields (with typed accessors for the upload fields) and at most
/// a small body.
public struct TransportResponse: Sendable {
    public var status: HTTPResponse.Status
    public var fields: UploadFields
    public var body: [UInt8]
    /// The HTTP version the answer came over, when the transport knows it (AsyncHTTPClient
    /// does; URLSession does not say). An `UploadQueue` runs more members at once over HTTP/2.
    public var httpVersion: HTTPProtocolVersion?

    public init(status: HTTPResponse.Status, headerFields: HTTPFields, body: [UInt8] = [], httpVersion: HTTPProtocolVersion? = nil) {
        self.status = status
        self.fields = UploadFields(headerFields)
        self.body = body
        self.httpVersion = httpVersion
    }

    /// Every field of the answer, as received.
    public var headerFields: HTTPFields { fields.headerFields }

    /// A status from a status code as a transport parsed it; throws for a code outside 100...999.
    public static func status(code: Int, reasonPhrase: String = "") throws -> HTTPResponse.Status {
        guard (100...999).contains(code) else { throw InvalidStatusCode(code: code) }
        return HTTPResponse.Status(code: code, reasonPhrase: reasonPhrase)
    }

    /// A server answered with a status code that is not three digits.
    public struct InvalidStatusCode: Error, CustomStringConvertible {
        public var code: Int
        public var description: String { "invalid HTTP status code \(code)" }
    }
}

/// An HTTP version, as a transport saw it on an answer.
public struct HTTPProtocolVersion: Sendable, Hashable, CustomStringConvertible {
    public var major: Int
    public var minor: Int

    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }

    public static let http1_0 = HTTPProtocolVersion(major: 1, minor: 0)
    public static let http1_1 = HTTPProtocolVersion(major: 1, minor: 1)
    public static let http2 = HTTPProtocolVersion(major: 2, minor: 0)
    public static let http3 = HTTPProtocolVersion(major: 3, minor: 0)

    /// HTTP/2 and later carry many requests at once over one connection.
    public var multiplexes: Bool { major >= 2 }

    public var description: String { major >= 2 ? "HTTP/\(major)" : "HTTP/\(major).\(minor)" }
}

/// Sends HTTP requests. Implementations stream file bodies with bounded memory, report body
/// bytes as they are handed to the network, and abort promptly when the task is cancelled.
public protocol UploadTransport: Sendable {
    /// Sends `request`, calling `progress` with the running count of body bytes sent.
    func send(_ request: TransportRequest, progress: @escaping @Sendable (Int64) -> Void) async throws -> TransportResponse
}

extension TransportRequest {
    /// tus HEAD of an upload: where it stands (`ferry status`).
    public static func status(of upload: URL) -> TransportRequest {
        TransportRequest(method: .head, url: upload, headerFields: [.tusResumable: "1.0.0"])
    }
}

/// Thrown by a transport when the server's identity cannot be verified: an unknown CA, a name
/// the certificate does not cover, an expired certificate, a public key matching no pin. It is
/// never retried: another attempt would meet the same certificate, and an attacker in the path
/// must not be given a thousand tries.
public struct TransportTrustError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}
