import FerryCore
import HTTPTypes

/// A protocol clients speak to upload (tus 1.0, RUFH): pure functions from a request head to
/// an `UploadCommand`, and from an `UploadOutcome` to its answer. A dialect does no I/O and
/// knows no framework; `UploadDispatcher` runs its commands against the engine.
public protocol UploadDialect: Sendable {
    /// What the dialect keeps of one request to answer it (its form, method, URLs): read once
    /// from the head, never failing; what is wrong with the request is `parse`'s to say.
    associatedtype Context: Sendable

    /// `tus` or `rufh` (statistics).
    var name: String { get }

    /// Whether this dialect answers `request` (one under the upload collection).
    func claims(_ request: HTTPRequest) -> Bool

    func context(of request: HTTPRequest) -> Context

    /// The command the request asks for, every field parsed once into typed values.
    func parse(_ request: HTTPRequest, _ context: Context) throws(FerryError) -> UploadCommand

    /// The answer to the request, from what running its command came to.
    func render(_ outcome: UploadOutcome, _ context: Context) -> UploadResponse

    /// An informational response to send before the final one, if any.
    func interim(_ event: InterimEvent, _ context: Context) -> HTTPResponse?

    /// Whether `interim` ever answers (else the transport is used as it is).
    var sendsInterims: Bool { get }

    /// Whether a failed append answers with the upload's state (`UploadOutcome.Failure.current`).
    var describesStateOnFailure: Bool { get }

    /// Whether an append that runs past the upload's known length invalidates the upload.
    var invalidatesOnOverrun: Bool { get }
}

extension UploadDialect {
    public func interim(_ event: InterimEvent, _ context: Context) -> HTTPResponse? { nil }
    public var sendsInterims: Bool { false }
    public var describesStateOnFailure: Bool { false }
    public var invalidatesOnOverrun: Bool { false }
}

/// Moments of a request a dialect may announce with an informational response.
public enum InterimEvent: Sendable {
    /// The upload was created and its body is about to be read (or there is none).
    case created(UploadRecord)
    /// A long append committed `offset` durably.
    case checkpoint(offset: Int64)
}

/// Sends informational (1xx) responses ahead of a request's final response.
public protocol InterimResponder: Sendable {
    func sendInterim(_ response: HTTPResponse) async
}

/// A transport that sends nothing informational (tests, and connections that cannot).
public struct NoInterim: InterimResponder {
    public init() {}
    public func sendInterim(_ response: HTTPResponse) async {}
}
