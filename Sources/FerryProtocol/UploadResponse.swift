import FerryCore
import HTTPTypes

/// What a dialect answers to one request; the HTTP adapter writes it out.
public struct UploadResponse: Sendable {
    public enum Body: Sendable, Equatable {
        case empty
        case text(String)
        /// Bytes of a complete upload, streamed by the adapter from the store.
        case content(UploadRecord, Range<Int64>)
    }

    public var status: HTTPResponse.Status
    public var headers: HTTPFields
    public var body: Body
    /// The error behind this response, if any (for logs and metrics).
    public var error: FerryError?

    public init(status: HTTPResponse.Status, headers: HTTPFields = [:], body: Body = .empty, error: FerryError? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.error = error
    }

    /// The body as text (tests and logs); empty for streamed content.
    public var text: String {
        if case .text(let text) = body { return text }
        return ""
    }
}
