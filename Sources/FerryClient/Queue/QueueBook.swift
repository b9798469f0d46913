import Foundation

/// One member as the queue saves it.
struct QueueRecord: Codable, Sendable, Equatable {
    struct Pair: Codable, Sendable, Equatable {
        var key: String
        var value: String
    }

    var id: QueueItemID
    /// Absolute and standardized.
    var path: String
    var endpoint: String
    var priority: UploadPriority
    /// Enqueue order (FIFO within a priority); a member enqueued again gets a new one.
    var sequence: Int64
    var metadata: [Pair]
    var dialect: UploadDialect
    /// The file's length and modification time when enqueued: a finished member whose file
    /// changed since is uploaded again when enqueued again.
    var length: Int64
    var modified: Double
    /// Never saved as `running` (a member that was running is `queued` for the next process).
    var state: QueueItemState
    var url: String?
    var error: String?
    var businessStatus: String?
    var businessResult: String?
    /// Done by instant upload (nil in files written before it existed).
    var storedInstantly: Bool?
}

extension UploadDialect: Codable {}

/// The queue's saved state: `queue.json` in its directory.
struct QueueFile: Codable, Sendable, Equatable {
    var format = 1
    var nextSequence: Int64 = 0
    var items: [QueueRecord] = []
}

/// The members and which one runs next: pure state, no I/O (`UploadQueue` performs it).
struct QueueBook: Sendable {
    private(set) var records: [QueueRecord] = []
    /// Every member as the public snapshot shows it, kept beside `records` (same positions) so
    /// a snapshot on every progress report costs no parsing; `acknowledged` is not saved.
    private(set) var items: [QueueItem] = []
    private var index: [QueueItemID: Int] = [:]
    private(set) var nextSequence: Int64 = 0

    /// How a member ended.
    enum Outcome: Sendable, Equatable {
        case done(url: String, length: Int64, businessStatus: String?, businessResult: String?, storedInstantly: Bool = false)
        case failed(String)
        case cancelled
        /// The queue was stopped: the member waits for the next run (or process).
        case stopped
    }

    /// What `admit` did.
    enum Admission: Sendable, Equatable {
        case added(QueueItemID)
        /// The same file to the same endpoint is already a member, queued, running, or done
        /// with the file unchanged: nothing new to upload.
        case existing(QueueItemID)
        /// It was a member that failed, was cancelled, or is done but its file changed since:
        /// queued again, behind the members already queued.
        case requeued(QueueItemID)

        var id: QueueItemID {
            switch self {
            case .added(let id), .existing(let id), .requeued(let id): id
            }
        }
    }

    init(file: QueueFile = QueueFile()) {
        nextSequence = file.nextSequence
        for var record in file.items {
            if record.state == .running { record.state = .queued }
            nextSequence = max(nextSequence, record.sequence + 1)
            append(record)
        }
    }

    /// The state to save: running members as `queued`.
    var file: QueueFile {
        QueueFile(
            nextSequence: nextSequence,
            items: records.map { record in
                var saved = record
                if saved.state == .running { saved.state = .queued }
                return saved
            }
        )
    }

    subscript(id: QueueItemID) -> QueueRecord? { index[id].map { records[$0] } }

    var running: Int { records.reduce(0) { $0 + ($1.state == .running ? 1 : 0) } }
    var hasQueued: Bool { records.contains { $0.state == .queued } }

    /// Adds `candidate` (its `sequence` is assigned here), unless the same file to the same
    /// endpoint is a member already (see `Admission`).
    mutating func admit(_ candidate: QueueRecord) -> Admission {
        if let position = records.firstIndex(where: { $0.path == candidate.path && $0.endpoint == candidate.endpoint }) {
            var record = records[position]
            switch record.state {
            case .queued, .running:
                record.priority = max(record.priority, candidate.priority)
                set(position, record)
                return .existing(record.id)
            case .done where record.length == candidate.length && record.modified == candidate.modified:
                return .existing(record.id)
            case .done, .failed, .cancelled:
                let id = record.id
                record = candidate
                record.id = id
                record.state = .queued
                record.sequence = takeSequence()
                set(position, record, acknowledged: 0)
                return .requeued(id)
            }
        }
        var record = candidate
        record.state = .queued
        record.sequence = takeSequence()
        append(record)
        return .added(record.id)
    }

    /// The queued member to start next: the highest priority, the earliest enqueued.
    func next() -> QueueItemID? {
        var best: QueueRecord?
        for record in records where record.state == .queued {
            guard let current = best else {
                best = record
                continue
            }
            if record.priority > current.priority || (record.priority == current.priority && record.sequence < current.sequence) {
                best = record
            }
        }
        return best?.id
    }

    mutating func start(_ id: QueueItemID) {
        update(id) { $0.state = .running }
    }

    /// A running member's upload reported `bytes` acknowledged.
    mutating func progressed(_ id: QueueItemID, acknowledged bytes: Int64) {
        guard let position = index[id], records[position].state == .running else { return }
        items[position].acknowledged = bytes
    }

    mutating func finish(_ id: QueueItemID, _ outcome: Outcome) {
        update(id) { record in
            switch outcome {
            case .done(let url, let length, let status, let result, let instantly):
                record.storedInstantly = instantly ? true : nil
                record.state = .done
                record.url = url
                record.error = nil
                record.length = length
                record.businessStatus = status
                record.businessResult = result
            case .failed(let message):
                record.state = .failed
                record.error = message
            case .cancelled:
                record.state = .cancelled
            case .stopped:
                record.state = .queued
            }
        }
    }

    /// Cancels a queued member; false when it is not queued.
    mutating func cancelQueued(_ id: QueueItemID) -> Bool {
        guard let position = index[id], records[position].state == .queued else { return false }
        var record = records[position]
        record.state = .cancelled
        set(position, record)
        return true
    }

    /// Forgets every member that is done or cancelled.
    mutating func removeSettled() {
        let kept = zip(records, items).filter { $0.0.state != .done && $0.0.state != .cancelled }
        records = []
        items = []
        index = [:]
        for (record, item) in kept { append(record, acknowledged: item.acknowledged) }
    }

    private mutating func append(_ record: QueueRecord, acknowledged: Int64 = 0) {
        index[record.id] = records.count
        records.append(record)
        items.append(Self.item(record, acknowledged: acknowledged))
    }

    /// Replaces the record at `position` and its item (keeping the bytes acknowledged unless given).
    private mutating func set(_ position: Int, _ record: QueueRecord, acknowledged: Int64? = nil) {
        records[position] = record
        items[position] = Self.item(record, acknowledged: acknowledged ?? items[position].acknowledged)
    }

    private mutating func update(_ id: QueueItemID, _ body: (inout QueueRecord) -> Void) {
        guard let position = index[id] else { return }
        var record = records[position]
        body(&record)
        set(position, record)
    }

    private static func item(_ record: QueueRecord, acknowledged: Int64) -> QueueItem {
        QueueItem(
            id: record.id,
            path: record.path,
            endpoint: URL(string: record.endpoint) ?? URL(fileURLWithPath: "/"),
            priority: record.priority,
            state: record.state,
            acknowledged: record.state == .done ? record.length : acknowledged,
            length: record.length,
            url: record.url.flatMap { URL(string: $0) },
            error: record.error,
            businessStatus: record.businessStatus,
            businessResult: record.businessResult,
            storedInstantly: record.storedInstantly ?? false
        )
    }

    private mutating func takeSequence() -> Int64 {
        defer { nextSequence += 1 }
        return nextSequence
    }
}
