import FerryCore
import Foundation

/// What running an `UploadCommand` came to; a dialect's `render` turns it into its answer.
public struct UploadOutcome: Sendable {
    /// Boxed: a value of it waits in every frame of a request's call chain, often for as long
    /// as a slow body trickles, so it is one pointer there.
    public indirect enum Result: Sendable {
        case options(scenario: String?)
        /// `withUpload`: the creation carried (or could have carried) the first bytes.
        case created(UploadRecord, withUpload: Bool)
        case concatenated(UploadRecord, request: String)
        case status(UploadRecord)
        case appended(UploadRecord)
        case content(UploadRecord, ByteRange.Request)
        case terminated(UploadID)
        case failed(FerryError, Failure)
    }

    /// What is known about the upload a failed request was about.
    public struct Failure: Sendable {
        /// A creation whose body failed: the upload exists, as last committed.
        public var created: UploadRecord?
        /// The upload's committed state after the failure, for dialects that describe it on
        /// errors (`UploadDialect.describesStateOnFailure`); nil when unknown or gone.
        public var current: UploadRecord?
        /// The upload was invalidated because the body ran past its length.
        public var invalidated: Bool
        /// The offset the request gave, when it gave one.
        public var providedOffset: Int64?

        public init(created: UploadRecord? = nil, current: UploadRecord? = nil, invalidated: Bool = false, providedOffset: Int64? = nil) {
            self.created = created
            self.current = current
            self.invalidated = invalidated
            self.providedOffset = providedOffset
        }
    }

    public var result: Result
    /// When the command ended (remaining lifetimes are counted from here).
    public var at: Date

    public init(_ result: Result, at: Date) {
        self.result = result
        self.at = at
    }

    public static func failed(_ error: FerryError, at: Date) -> UploadOutcome {
        UploadOutcome(.failed(error, Failure()), at: at)
    }
}

/// The limits of new uploads of a scenario, or of one upload: what OPTIONS and RUFH's
/// `Upload-Limit` announce.
public struct UploadLimits: Sendable, Equatable {
    public var maxSize: Int64?
    /// Seconds the upload may still live (new uploads: the whole lifetime).
    public var maxAge: Int64?

    public init(maxSize: Int64? = nil, maxAge: Int64? = nil) {
        self.maxSize = maxSize
        self.maxAge = maxAge
    }

    /// The limits of new uploads in `scenario` (nil: the default scenario).
    public init(scenario: String?, scenarios: ScenarioSet, capabilities: EngineCapabilities) {
        let chosen = (scenario ?? scenarios.defaultName).flatMap { try? scenarios.named($0) }
        var maxSize = capabilities.maxSize
        if let limit = chosen?.maxSize { maxSize = min(maxSize ?? limit, limit) }
        self.maxSize = maxSize
        self.maxAge = (chosen?.expiry ?? capabilities.expiry).map { Int64($0.inSeconds.rounded(.down)) }
    }

    /// The limits of an existing upload: its own length, and its remaining lifetime at `now`.
    public init(of record: UploadRecord, capabilities: EngineCapabilities, at now: Date) {
        maxSize = record.length ?? capabilities.maxSize
        if !record.isComplete, let expiresAt = record.expiresAt {
            maxAge = max(0, Int64(expiresAt.timeIntervalSince(now).rounded(.down)))
        }
    }

    /// As an `Upload-Limit` structured dictionary: `max-size`, always `min-size=0`, and the
    /// lifetime under `ageKey` (`max-age`; interop 6 says `expires`).
    public func field(ageKey: String = "max-age") -> String {
        var parts: [String] = []
        if let maxSize { parts.append("max-size=\(maxSize)") }
        parts.append("min-size=0")
        if let maxAge { parts.append("\(ageKey)=\(maxAge)") }
        return parts.joined(separator: ", ")
    }
}
