import Foundation

/// The events an upload's life produces (docs/business.md, "Events").
public enum UploadEventType: String, Sendable, CaseIterable, Codable {
    case created = "upload.created"
    case progress = "upload.progress"
    case completed = "upload.completed"
    case terminated = "upload.terminated"
    case expired = "upload.expired"
}

/// One event for one webhook, written to the catalog's outbox in the same transaction as the
/// change it describes, then delivered (at least once) by a dispatcher.
public struct OutboxEvent: Sendable, Equatable {
    /// `<upload id>-<sequence>`: the same on every delivery attempt, on every node.
    public var id: String
    public var uploadID: UploadID
    /// Numbers an upload's events from 1.
    public var sequence: Int64
    public var type: UploadEventType
    /// The webhook URL.
    public var destination: String
    /// The JSON body, fixed when the event was written.
    public var payload: String
    public var createdAt: Date

    public init(uploadID: UploadID, sequence: Int64, type: UploadEventType, destination: String, payload: String, createdAt: Date) {
        self.id = "\(uploadID.rawValue)-\(sequence)"
        self.uploadID = uploadID
        self.sequence = sequence
        self.type = type
        self.destination = destination
        self.payload = payload
        self.createdAt = createdAt
    }
}

/// Where the delivery of one outbox event to its webhook stands.
public struct EventDelivery: Sendable, Equatable {
    public enum State: String, Sendable, Codable {
        case pending
        case delivered
        /// Given up after the dead-letter time; kept for inspection.
        case dead
    }

    public var event: OutboxEvent
    public var state: State
    public var attempts: Int
    /// When the next attempt may start (also pushed forward while a dispatcher holds it).
    public var nextAttemptAt: Date
    public var lastError: String?
    public var deliveredAt: Date?

    public init(event: OutboxEvent, state: State, attempts: Int, nextAttemptAt: Date, lastError: String?, deliveredAt: Date?) {
        self.event = event
        self.state = state
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.lastError = lastError
        self.deliveredAt = deliveredAt
    }
}

/// The result of one delivery attempt, as the dispatcher records it.
public enum DeliveryOutcome: Sendable, Equatable {
    case delivered(at: Date)
    case retry(at: Date, error: String)
    case dead(error: String)

    /// The outbox columns the outcome sets: the state, the next attempt (nil: unchanged), the
    /// last error, the delivery time; times in seconds since 1970.
    public var columns: (state: String, nextAttemptAt: Double?, error: String?, deliveredAt: Double?) {
        switch self {
        case .delivered(let date): ("delivered", nil, nil, date.timeIntervalSince1970)
        case .retry(let date, let message): ("pending", date.timeIntervalSince1970, message, nil)
        case .dead(let message): ("dead", nil, message, nil)
        }
    }
}

/// One attempt's outcome for one event and webhook, as the dispatcher records it.
public struct DeliveryRecord: Sendable, Equatable {
    public var eventID: String
    public var destination: String
    /// The count of attempts, this one included.
    public var attempts: Int
    public var outcome: DeliveryOutcome

    public init(eventID: String, destination: String, attempts: Int, outcome: DeliveryOutcome) {
        self.eventID = eventID
        self.destination = destination
        self.attempts = attempts
        self.outcome = outcome
    }
}

/// The business system's answer to an upload's `pre-finish` callback.
public struct BusinessResult: Sendable, Equatable {
    public enum Status: String, Sendable {
        /// Not obtained yet: the callback is retried in the background.
        case pending
        case done
        /// Given up; the upload stays complete.
        case failed
    }

    public var status: Status
    /// Compact JSON (ASCII), once done.
    public var json: String?
    public var attempts: Int
    /// When a pending callback is tried again.
    public var nextAttemptAt: Date?

    public init(status: Status, json: String? = nil, attempts: Int = 0, nextAttemptAt: Date? = nil) {
        self.status = status
        self.json = json
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
    }
}
