import Foundation

/// The upload protocol as a pure state machine: events in, actions out, no I/O.
///
/// The driver (`Uploader`) performs each action and reports its outcome as the next event.
/// Chunk sizing, backoff, the deadline and which requests carry a checksum live here, so their
/// interplay is table-testable; computing the checksum is the driver's I/O.
public struct UploadMachine: Sendable {
    public enum Action: Sendable, Equatable {
        /// Ask the server what it supports (OPTIONS).
        case discover
        /// Create the upload; `firstChunk` is sent in the same request (creation-with-upload),
        /// with `checksum` of it, if any.
        case create(firstChunk: Range<Int64>?, checksum: RequestChecksum? = nil)
        /// Ask the server for the offset (HEAD).
        case locate(URL)
        /// Send these bytes (PATCH), with `checksum` of them, if any.
        case send(URL, Range<Int64>, checksum: RequestChecksum? = nil)
        /// Send these bytes (possibly none) and declare the total length (a stream that ended),
        /// with `checksum` of them, if any.
        case sendFinal(URL, Range<Int64>, length: Int64, checksum: RequestChecksum? = nil)
        /// Everything produced so far is acknowledged: wait for the stream to produce more.
        case awaitData
        /// Wait before the next attempt.
        case wait(Duration)
        /// Forget the persisted upload URL and create a new upload (the server lost it).
        case startOver
        /// Done: every byte is acknowledged.
        case finish(URL)
        /// Give up.
        case fail(UploadError)

        /// `finish` and `fail` end the upload.
        public var isTerminal: Bool {
            switch self {
            case .finish, .fail: true
            default: false
            }
        }
    }

    public enum Event: Sendable, Equatable {
        /// Begin; with a URL and offset persisted by an earlier run, if any.
        case start(resume: URL?)
        case discovered(ServerCapabilities)
        case created(URL, offset: Int64)
        case located(offset: Int64)
        /// A PATCH was acknowledged with `offset` after `duration`.
        case sent(offset: Int64, duration: Duration)
        case failed(RequestFailure)
        case waited
        case networkChanged(NetworkKind)
        /// The stream produced more (see `updateAvailable`).
        case dataArrived
    }

    public enum Phase: String, Sendable {
        case discovering, creating, locating, sending, waiting, completed, failed
    }

    /// Bytes in the upload; nil while a stream is still producing them.
    public private(set) var length: Int64?
    /// Bytes ready to send (the whole file, or what a stream produced so far).
    public private(set) var available: Int64
    /// Whether the server knows the length (always for files, declared at creation).
    private var lengthDeclared: Bool
    /// The request in flight declares the length (`sendFinal`).
    private var inFlightDeclares = false
    public private(set) var phase: Phase = .discovering
    public private(set) var url: URL?
    /// The highest offset the server acknowledged.
    public private(set) var acknowledged: Int64 = 0
    public private(set) var capabilities = ServerCapabilities()
    public private(set) var sizer: ChunkSizer
    public private(set) var backoff: Backoff
    /// Requests that failed, over the whole upload.
    public private(set) var failures = 0
    /// Which requests carry a checksum.
    public let checksums: ChecksumPolicy
    /// Requests with a body that succeeded in a row (the checksum policy's measure of the link).
    public private(set) var successStreak = 0
    private var startedOver = false
    private var lastFailure = ""
    private var inFlight: Range<Int64>?
    private var discovered = false
    private var discoveryFailures = 0
    /// The client announces the file's digest when the server offers instant upload: its
    /// creation then carries no bytes, so that the server may answer with a challenge.
    public var announcesDigest = false
    /// A file that fits in its creation request is announced only from this size: below it the
    /// extra request a miss costs outweighs what a hit saves (`UploadOptions.instantUploadMinimum`).
    public var announcementMinimum: Int64 = 0

    public init(length: Int64?, sizer: ChunkSizer = ChunkSizer(), retry: RetryPolicy = RetryPolicy(), checksums: ChecksumPolicy = ChecksumPolicy()) {
        self.length = length
        self.available = length ?? 0
        self.lengthDeclared = length != nil
        self.sizer = sizer
        self.backoff = Backoff(policy: retry)
        self.checksums = checksums
    }

    /// Handles one event. `elapsed` is the time since the upload began (for the deadline);
    /// `random` is uniform in [0, 1) (for jitter).
    public mutating func handle(_ event: Event, elapsed: Duration, random: Double) -> Action {
        switch event {
        case .start(let resume):
            if let resume {
                url = resume
                return locate(resume)
            }
            phase = .discovering
            return .discover
        case .discovered(let capabilities):
            self.capabilities = capabilities
            discovered = true
            return create()
        case .created(let url, let offset):
            self.url = url
            return advance(to: offset)
        case .located(let offset):
            return advance(to: offset)
        case .sent(let offset, let duration):
            successStreak += 1
            if let range = inFlight, offset >= range.upperBound {
                sizer.succeeded(bytes: Int64(range.count), in: duration)
                if inFlightDeclares { lengthDeclared = true }
            }
            return advance(to: offset)
        case .failed(let failure):
            return failed(failure, elapsed: elapsed, random: random)
        case .waited:
            if let url { return locate(url) }
            if !discovered {
                phase = .discovering
                return .discover
            }
            return create()
        case .networkChanged(let network):
            sizer.networkChanged(to: network)
            return .wait(.zero)
        case .dataArrived:
            return advance(to: acknowledged)
        }
    }

    /// A stream produced more bytes, or ended (then its length is `available`).
    public mutating func updateAvailable(_ available: Int64, finished: Bool) {
        self.available = max(self.available, available)
        if finished, length == nil { length = self.available }
    }

    /// A request without a body was answered after `duration` (the sizer's round trip).
    public mutating func answered(in duration: Duration) {
        sizer.answered(in: duration)
    }

    /// The server already knows the length (a restarted stream whose last request declared it).
    public mutating func serverDeclared(length declared: Int64) {
        guard length == nil || length == declared else { return }
        length = declared
        available = max(available, declared)
        lengthDeclared = true
    }

    private mutating func locate(_ url: URL) -> Action {
        phase = .locating
        inFlight = nil
        return .locate(url)
    }

    private mutating func create() -> Action {
        if let maxSize = capabilities.maxSize, let length, length > maxSize {
            return fail(.rejected(status: 413, code: "ERR_MAX_SIZE_EXCEEDED", message: "the server accepts at most \(maxSize) bytes (Tus-Max-Size)"))
        }
        phase = .creating
        let announces = announcesDigest && capabilities.instantUpload
        if capabilities.creationWithUpload, let length, length > 0, length <= sizer.size, !(announces && length >= announcementMinimum) {
            inFlight = 0..<length
            return .create(firstChunk: 0..<length, checksum: checksum(length))
        }
        inFlight = nil
        return .create(firstChunk: nil)
    }

    private mutating func advance(to offset: Int64) -> Action {
        if offset > acknowledged {
            acknowledged = offset
            backoff.progressed()
        }
        guard let url else { return create() }
        if let length, offset >= length, lengthDeclared {
            phase = .completed
            return .finish(url)
        }
        phase = .sending
        if offset < available {
            let range = offset..<min(available, offset + sizer.size)
            inFlight = range
            inFlightDeclares = false
            if let length, !lengthDeclared, range.upperBound == length {
                inFlightDeclares = true
                return .sendFinal(url, range, length: length, checksum: checksum(Int64(range.count)))
            }
            return .send(url, range, checksum: checksum(Int64(range.count)))
        }
        if let length, !lengthDeclared {
            inFlight = offset..<offset
            inFlightDeclares = true
            return .sendFinal(url, offset..<offset, length: length, checksum: checksum(0))
        }
        phase = .waiting
        inFlight = nil
        return .awaitData
    }

    /// The checksum a request with a body of `bytes` bytes carries.
    private func checksum(_ bytes: Int64) -> RequestChecksum? {
        checksums.checksum(forBody: bytes, server: capabilities, successStreak: successStreak)
    }

    private mutating func failed(_ failure: RequestFailure, elapsed: Duration, random: Double) -> Action {
        failures += 1
        lastFailure = failure.description
        // A request with a body broke off or was refused: the link is not proven reliable.
        if inFlight != nil { successStreak = 0 }
        var retryAfter: Duration?
        if case .untrusted(let message) = failure { return fail(.untrusted(message)) }
        if phase == .discovering {
            // OPTIONS is optional in tus: after an error answer, or repeated failures, use core tus.
            discoveryFailures += 1
            if case .status = failure { return useCoreTus() }
            if discoveryFailures >= 3 { return useCoreTus() }
        }
        switch failure {
        case .stalled:
            // A dead connection: smaller requests replace the next one faster.
            if inFlight != nil { sizer.stalledOrFailed() }
        case .untrusted:
            break  // failed above
        case .transport:
            // Reset or closed, and noticed at once: the server kept what arrived, and a
            // smaller request would not have fared better (middleboxes cut by bytes or time).
            break
        case .status(let status, let code, let after, let message):
            switch status {
            case 404, 410:
                guard url != nil else { return fail(.rejected(status: status, code: code, message: message)) }
                guard !startedOver else { return fail(.uploadGone) }
                startedOver = true
                url = nil
                acknowledged = 0
                phase = .creating
                return .startOver
            case 409:
                // The offset moved (an earlier request stored more than we knew): re-read it.
                if let url { return locate(url) }
            case 423, 429, 503:
                retryAfter = after
            case 300..<400:
                return fail(.rejected(status: status, code: code, message: "the server redirects (\(message)); use the URL it names"))
            case 400..<500:
                if phase == .locating, acknowledged == 0, url != nil, !startedOver {
                    // A persisted upload the server now refuses to describe: start over, once.
                    startedOver = true
                    url = nil
                    phase = .creating
                    return .startOver
                }
                return fail(.rejected(status: status, code: code, message: message))
            default:
                retryAfter = after
                if inFlight != nil { sizer.stalledOrFailed() }
            }
        }
        if elapsed >= backoff.policy.deadline {
            return fail(.deadlineExceeded(lastFailure: lastFailure))
        }
        guard let delay = backoff.nextDelay(retryAfter: retryAfter, unit: random) else {
            return fail(.gaveUp(attempts: backoff.attempt, lastFailure: lastFailure))
        }
        phase = .waiting
        inFlight = nil
        return .wait(min(delay, max(.zero, backoff.policy.deadline - elapsed)))
    }

    private mutating func useCoreTus() -> Action {
        discovered = true
        return create()
    }

    private mutating func fail(_ error: UploadError) -> Action {
        phase = .failed
        return .fail(error)
    }
}
