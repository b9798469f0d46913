import Foundation

/// A member of an `UploadQueue`: stable across processes (it is saved with the queue).
public struct QueueItemID: Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }

    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// Where a member of an `UploadQueue` stands.
public enum QueueItemState: String, Sendable, Codable, CaseIterable {
    /// Waiting for a slot (also a member a stopped process left unfinished).
    case queued
    /// Its `Upload` is running.
    case running
    /// Uploaded: its `url` is set.
    case done
    /// Ended with an error (its `error`); not retried unless enqueued again.
    case failed
    /// Cancelled by the caller; a running one was also deleted on the server (tus termination).
    case cancelled

    /// `done`, `failed` and `cancelled` members do not run again.
    public var isFinal: Bool {
        switch self {
        case .done, .failed, .cancelled: true
        case .queued, .running: false
        }
    }
}

/// One member, as a snapshot.
public struct QueueItem: Sendable, Equatable, Identifiable {
    public var id: QueueItemID
    public var path: String
    public var endpoint: URL
    public var priority: UploadPriority
    public var state: QueueItemState
    /// Bytes the server acknowledged (the length once done; what an interrupted upload had
    /// reached is known again once it runs).
    public var acknowledged: Int64
    /// The file's length when it was enqueued.
    public var length: Int64
    /// The upload URL, once done.
    public var url: URL?
    /// Why it failed.
    public var error: String?
    /// `Ferry-Business-Status` and `Ferry-Business-Result` of the final answer, if any.
    public var businessStatus: String?
    public var businessResult: String?
    /// Done by instant upload: the server held the file and none of its bytes were sent.
    public var storedInstantly = false
}

/// A snapshot of an `UploadQueue`: every member, and the totals.
public struct QueueProgress: Sendable, Equatable {
    /// Every member, in the order it was first enqueued.
    public var items: [QueueItem]
    /// How many members may run at once now (see `UploadQueue.Configuration`).
    public var concurrency: Int
    /// The HTTP version of the newest answer, if the transport reports it.
    public var httpVersion: HTTPProtocolVersion?
    /// The newest failure to save the queue's state, if any (the uploads go on meanwhile).
    public var persistenceError: String?

    public init(items: [QueueItem], concurrency: Int, httpVersion: HTTPProtocolVersion? = nil, persistenceError: String? = nil) {
        self.items = items
        self.concurrency = concurrency
        self.httpVersion = httpVersion
        self.persistenceError = persistenceError
    }

    /// Bytes acknowledged, over every member not cancelled.
    public var acknowledged: Int64 { items.reduce(0) { $0 + ($1.state == .cancelled ? 0 : $1.acknowledged) } }
    /// Bytes to upload, over every member not cancelled.
    public var total: Int64 { items.reduce(0) { $0 + ($1.state == .cancelled ? 0 : $1.length) } }
    /// Members not cancelled.
    public var filesTotal: Int { items.count - count(.cancelled) }
    public var filesDone: Int { count(.done) }
    public var filesFailed: Int { count(.failed) }
    public var filesRunning: Int { count(.running) }
    public var filesQueued: Int { count(.queued) }

    public func count(_ state: QueueItemState) -> Int { items.reduce(0) { $0 + ($1.state == state ? 1 : 0) } }

    public subscript(id: QueueItemID) -> QueueItem? { items.first { $0.id == id } }
}

/// What `UploadQueue.run()` returns: every member with its URL or its error, and the counts.
public struct QueueSummary: Sendable, Equatable {
    public var items: [QueueItem]

    public init(items: [QueueItem]) { self.items = items }

    public var done: Int { items.filter { $0.state == .done }.count }
    public var failed: Int { items.filter { $0.state == .failed }.count }
    public var cancelled: Int { items.filter { $0.state == .cancelled }.count }
    /// Members still queued (the run was stopped before they ran).
    public var unfinished: Int { items.filter { !$0.state.isFinal }.count }
    /// Every member is done.
    public var succeeded: Bool { done == items.count }

    public subscript(id: QueueItemID) -> QueueItem? { items.first { $0.id == id } }
}
