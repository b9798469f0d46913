import Foundation

/// Where a request body comes from.
public enum RequestBody: Sendable, Equatable {
    /// A byte range of a file, streamed with bounded memory.
    case file(path: String, range: Range<Int64>)
    case bytes([UInt8])

    public var count: Int64 {
        switch self {
        case .file(_, let range): Int64(range.count)
        case .bytes(let bytes): Int64(bytes.count)
        }
    }
}

/// One HTTP request as the uploader builds it.
public struct TransportRequest: Sendable {
    public var method: String
    public var url: URL
    public var headers: [(String, String)]
    public var body: RequestBody?

    public init(method: String, url: URL, headers: [(String, String)] = [], body: RequestBody? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// The answer, with header names lowercased and at most a small body.
public struct TransportResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]

    public init(status: Int, headers: [String: String], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// Sends HTTP requests. Implementations stream file bodies with bounded memory, report body
/// bytes as they are handed to the network, and abort promptly when the task is cancelled.
public protocol UploadTransport: Sendable {
    func send(_ request: TransportRequest, progress: @escaping @Sendable (Int64) -> Void) async throws -> TransportResponse
}
