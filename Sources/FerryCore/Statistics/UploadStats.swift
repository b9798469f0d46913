import Foundation

/// Who sent a request, as far as statistics care: the protocol, the kind of client, and the
/// network the client says it is on. Every value is from a small fixed set (they become
/// Prometheus labels and grouping keys).
public struct RequestInfo: Sendable, Equatable {
    public var dialect: String
    public var client: String
    public var network: String

    public init(dialect: String = "tus", client: String = "other", network: String = "unknown") {
        self.dialect = dialect
        self.client = client
        self.network = network
    }

    /// The networks a client can declare (`Ferry-Network`, or the `network` metadata).
    /// `cellular` is a mobile link of unknown generation.
    public static let networks: Set<String> = ["wifi", "5g", "4g", "3g", "2g", "cellular", "wired", "unknown"]

    /// A declared network, normalised (`LTE` → `4g`, `WiFi` → `wifi`); `unknown` otherwise.
    public static func network(_ declared: String?) -> String {
        guard let value = declared?.trimmingCharacters(in: .whitespaces).lowercased(), !value.isEmpty else { return "unknown" }
        switch value {
        case "lte", "4g", "lte-a": return "4g"
        case "nr", "5g": return "5g"
        case "wi-fi", "wlan", "wifi": return "wifi"
        case "ethernet", "wired": return "wired"
        default: return networks.contains(value) ? value : "unknown"
        }
    }

    /// The kinds of client statistics tell apart.
    public static let clients: Set<String> = [
        "ferry", "console", "urlsession", "tus-js", "tuskit", "tus-android", "python", "curl", "browser", "other",
    ]

    /// A client that names its kind (`Ferry-Client: console`) is believed if the kind is known;
    /// else the `User-Agent` decides.
    public static func client(declared: String?, userAgent: String?) -> String {
        if let declared = declared?.lowercased(), clients.contains(declared) { return declared }
        return client(userAgent: userAgent)
    }

    /// The kind of client behind a `User-Agent`.
    public static func client(userAgent: String?) -> String {
        guard let agent = userAgent?.lowercased(), !agent.isEmpty else { return "other" }
        let kinds: [(String, String)] = [
            ("ferry-console", "console"), ("ferry", "ferry"), ("tus-js-client", "tus-js"), ("uppy", "tus-js"),
            ("tuskit", "tuskit"), ("tus-android", "tus-android"), ("okhttp", "tus-android"), ("tuspy", "python"),
            ("python", "python"), ("cfnetwork", "urlsession"), ("curl", "curl"), ("mozilla", "browser"),
        ]
        return kinds.first { agent.contains($0.0) }?.1 ?? "other"
    }
}

/// Where an upload ended up, for statistics.
public enum StatsState: String, Sendable, CaseIterable {
    case incomplete, complete, terminated, expired
}

/// The statistics record of one upload (kept apart from the upload's own record, written off
/// the request path in batches, and pruned after the retention).
public struct UploadStats: Sendable, Equatable {
    public var id: UploadID
    public var scenario: String
    public var owner: String?
    public var info: RequestInfo
    public var createdAt: Date
    public var firstByteAt: Date?
    public var completedAt: Date?
    /// When it was terminated or expired.
    public var endedAt: Date?
    public var state: StatsState
    public var length: Int64?
    /// Bytes received, counting any sent twice.
    public var bytes: Int64
    public var requests: Int
    public var interrupted: Int
    /// Requests that continued from a stored offset after an interrupted one.
    public var resumptions: Int
    /// What the client reported about itself (JSON object), if it did.
    public var telemetry: String?
    public var lastRequestAt: Date?
    /// The last append was interrupted: the next one at a non-zero offset is a resumption.
    public var awaitingResume: Bool
    /// Completed by instant upload: a proof of possession, none of its bytes received (its
    /// `length` bytes were saved).
    public var instant: Bool

    public init(
        id: UploadID, scenario: String, owner: String?, info: RequestInfo, createdAt: Date, firstByteAt: Date? = nil,
        completedAt: Date? = nil, endedAt: Date? = nil, state: StatsState = .incomplete, length: Int64?, bytes: Int64 = 0,
        requests: Int = 0, interrupted: Int = 0, resumptions: Int = 0, telemetry: String? = nil, lastRequestAt: Date? = nil,
        awaitingResume: Bool = false, instant: Bool = false
    ) {
        self.instant = instant
        self.id = id
        self.scenario = scenario
        self.owner = owner
        self.info = info
        self.createdAt = createdAt
        self.firstByteAt = firstByteAt
        self.completedAt = completedAt
        self.endedAt = endedAt
        self.state = state
        self.length = length
        self.bytes = bytes
        self.requests = requests
        self.interrupted = interrupted
        self.resumptions = resumptions
        self.telemetry = telemetry
        self.lastRequestAt = lastRequestAt
        self.awaitingResume = awaitingResume
    }

    /// Applies one event to this record: the reference semantics the stores implement (in SQL).
    public mutating func apply(_ event: StatsEvent) {
        switch event {
        case .created:
            break
        case .request(let entry):
            requests += 1
            bytes += entry.bytes
            lastRequestAt = max(lastRequestAt ?? entry.at, entry.at)
            if entry.bytes > 0, firstByteAt == nil { firstByteAt = entry.at }
            guard entry.isAppend else { return }
            if entry.offset > 0, awaitingResume { resumptions += 1 }
            if entry.wasInterrupted { interrupted += 1 }
            awaitingResume = entry.wasInterrupted
        case .completed(_, let at, let length):
            state = .complete
            completedAt = at
            self.length = length
        case .ended(_, let at, let ended):
            if state == .incomplete {
                state = ended
                endedAt = at
            }
        case .telemetry(_, let json):
            telemetry = json
        case .instant:
            instant = true
        case .timeline:
            break
        }
    }

    /// Seconds from creation to the last byte.
    public var timeToComplete: Double? { completedAt.map { $0.timeIntervalSince(createdAt) } }

    /// Bytes per second from the first byte to the last (the creation's own time excluded).
    public var goodput: Double? {
        guard let completedAt, let length, length > 0 else { return nil }
        let seconds = completedAt.timeIntervalSince(firstByteAt ?? createdAt)
        return seconds > 0 ? Double(length) / seconds : nil
    }
}

/// One request in an upload's timeline.
public struct RequestEntry: Sendable, Equatable {
    public var upload: UploadID
    public var at: Date
    public var method: String
    /// The stored offset when the request began.
    public var offset: Int64
    /// Bytes the request carried that were received.
    public var bytes: Int64
    /// `ok`, `interrupted`, or the error code.
    public var outcome: String
    public var seconds: Double

    public init(upload: UploadID, at: Date, method: String, offset: Int64, bytes: Int64, outcome: String, seconds: Double) {
        self.upload = upload
        self.at = at
        self.method = method
        self.offset = offset
        self.bytes = bytes
        self.outcome = outcome
        self.seconds = seconds
    }

    public var wasInterrupted: Bool { outcome == "interrupted" }
    /// PATCH, or a creation that carried bytes (POST with a body).
    public var isAppend: Bool { method == "PATCH" || (method != "HEAD" && method != "DELETE" && bytes > 0) }
}

/// A change to the statistics, batched by `StatsRecorder` and applied by a `StatsStore`.
public enum StatsEvent: Sendable, Equatable {
    case created(UploadStats)
    /// A request on the upload; an append at a non-zero offset after an interrupted one is a resumption.
    case request(RequestEntry)
    case completed(UploadID, at: Date, length: Int64)
    /// Terminated or expired (ignored once complete).
    case ended(UploadID, at: Date, state: StatsState)
    case telemetry(UploadID, json: String)
    /// Completed by instant upload (after its `completed`).
    case instant(UploadID)
    /// A timeline row only (its counts are already in the upload's `created` record: the
    /// recorder folds a batch's events into the records it creates).
    case timeline(RequestEntry)
}

extension [StatsEvent] {
    /// The same changes with fewer writes: events about an upload created in this batch are
    /// applied to its `created` record (each request leaving only its timeline row).
    public func coalesced() -> [StatsEvent] {
        var created: [UploadID: Int] = [:]
        var out: [StatsEvent] = []
        out.reserveCapacity(count)
        for event in self {
            let id: UploadID
            switch event {
            case .created(let stats):
                created[stats.id] = out.count
                out.append(event)
                continue
            case .request(let entry): id = entry.upload
            case .completed(let upload, _, _), .ended(let upload, _, _), .telemetry(let upload, _), .instant(let upload): id = upload
            case .timeline:
                out.append(event)
                continue
            }
            guard let index = created[id], case .created(var stats) = out[index] else {
                out.append(event)
                continue
            }
            stats.apply(event)
            out[index] = .created(stats)
            if case .request(let entry) = event { out.append(.timeline(entry)) }
        }
        return out
    }
}
