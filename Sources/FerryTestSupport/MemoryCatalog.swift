import FerryCore
import Foundation
import Synchronization

/// An in-memory `UploadCatalog` for tests; every write is "durable" at once.
public final class MemoryCatalog: QuotaCatalog, ExpiryCatalog, BusinessRetryCatalog, ContentIndexCatalog, OutboxCatalog {
    public let name = "memory"
    private struct State {
        var records: [UploadID: UploadRecord] = [:]
        var outbox: [EventDelivery] = []
    }

    private let state = Mutex(State())

    public init() {}

    public func insert(_ record: UploadRecord, events: [OutboxEvent], claim: QuotaClaim?) async throws(FerryError) {
        try state.withLock { state throws(FerryError) in
            guard state.records[record.id] == nil else { throw FerryError(.catalogFailure, "the upload exists already") }
            if let claim { try claim.check(Self.usage(state.records.values, of: claim.owner, since: claim.countsCreationsSince)) }
            state.records[record.id] = record
            state.outbox += events.map(Self.pending)
        }
    }

    public func get(_ id: UploadID) async throws(FerryError) -> UploadRecord? {
        state.withLock { $0.records[id] }
    }

    /// One process keeps the locks of this catalog: `fence` is checked, never stored.
    public func update(_ record: UploadRecord, events: [OutboxEvent], fence: LeaseFence?) async throws(FerryError) {
        try await update(record, events: events, fence: fence, claim: nil)
    }

    public func update(_ record: UploadRecord, events: [OutboxEvent], fence: LeaseFence?, claim: QuotaClaim) async throws(FerryError) {
        try await update(record, events: events, fence: fence, claim: Optional(claim))
    }

    private func update(_ record: UploadRecord, events: [OutboxEvent], fence: LeaseFence?, claim: QuotaClaim?) async throws(FerryError) {
        try fence?.check()
        try state.withLock { state throws(FerryError) in
            guard state.records[record.id] != nil else { throw FerryError(.catalogFailure, "updated an unknown upload") }
            if let claim { try claim.check(Self.usage(state.records.values, of: claim.owner, since: claim.countsCreationsSince)) }
            state.records[record.id] = record
            state.outbox += events.map(Self.pending)
        }
    }

    public func remove(_ id: UploadID) async throws(FerryError) {
        _ = state.withLock { $0.records.removeValue(forKey: id) }
    }

    public func expiring(before date: Date, limit: Int) async throws(FerryError) -> [UploadRecord] {
        state.withLock { state in
            state.records.values
                .filter { $0.state == .incomplete && ($0.expiresAt.map { $0 < date } ?? false) }
                .sorted { ($0.expiresAt ?? date) < ($1.expiresAt ?? date) }
                .prefix(limit)
                .map { $0 }
        }
    }

    public func tombstones(before date: Date, limit: Int) async throws(FerryError) -> [UploadID] {
        state.withLock { state in
            state.records.values.filter { $0.state.isGone && $0.updatedAt < date }.prefix(limit).map(\.id)
        }
    }

    public func finals(referencing partial: UploadID) async throws(FerryError) -> [UploadID] {
        state.withLock { state in
            state.records.values.filter { $0.state == .incomplete && $0.partials.contains(partial) }.map(\.id).sorted()
        }
    }

    public func usage(of owner: String, since: Date?) async throws(FerryError) -> OwnerUsage {
        state.withLock { Self.usage($0.records.values, of: owner, since: since) }
    }

    private static func usage(_ records: some Collection<UploadRecord>, of owner: String, since: Date?) -> OwnerUsage {
        let mine = records.filter { $0.quotaKey == owner }
        let open = mine.filter { $0.state == .incomplete }
        return OwnerUsage(
            openUploads: open.count,
            openBytes: open.map(\.openBytes).saturatingSum(),
            recentCreations: since.map { since in mine.filter { $0.createdAt >= since }.count } ?? 0
        )
    }

    public func pendingBusinessResults(before date: Date, limit: Int) async throws(FerryError) -> [UploadRecord] {
        state.withLock { state in
            state.records.values
                .filter { $0.isComplete && $0.business?.status == .pending && ($0.business?.nextAttemptAt ?? .distantPast) <= date }
                .prefix(limit)
                .map { $0 }
        }
    }

    public func holders(scope: String, sha256: String, length: Int64, limit: Int) async throws(FerryError) -> [UploadRecord] {
        state.withLock { state in
            state.records.values
                .filter { $0.isComplete && $0.contentScope == scope && $0.sha256 == sha256 && $0.length == length }
                .sorted { ($0.createdAt, $0.id.rawValue) < ($1.createdAt, $1.id.rawValue) }
                .prefix(limit)
                .map { $0 }
        }
    }

    public func claimDeliveries(now: Date, leaseUntil: Date, limit: Int) async throws(FerryError) -> [EventDelivery] {
        state.withLock { state in
            var claimed: [EventDelivery] = []
            var blocked = Set<String>()
            for index in state.outbox.indices.sorted(by: { Self.order(state.outbox[$0], state.outbox[$1]) }) {
                let delivery = state.outbox[index]
                guard delivery.state == .pending else { continue }
                let stream = delivery.event.uploadID.rawValue + " " + delivery.event.destination
                guard blocked.insert(stream).inserted else { continue }
                guard delivery.nextAttemptAt <= now, claimed.count < limit else { continue }
                state.outbox[index].nextAttemptAt = leaseUntil
                claimed.append(delivery)
            }
            return claimed
        }
    }

    public func recordDeliveries(_ records: [DeliveryRecord]) async throws(FerryError) {
        state.withLock { state in
            for record in records {
                guard let index = state.outbox.firstIndex(where: { $0.event.id == record.eventID && $0.event.destination == record.destination })
                else { continue }
                state.outbox[index].attempts = record.attempts
                switch record.outcome {
                case .delivered(let date):
                    state.outbox[index].state = .delivered
                    state.outbox[index].deliveredAt = date
                    state.outbox[index].lastError = nil
                case .retry(let date, let error):
                    state.outbox[index].nextAttemptAt = date
                    state.outbox[index].lastError = error
                case .dead(let error):
                    state.outbox[index].state = .dead
                    state.outbox[index].lastError = error
                }
            }
        }
    }

    public func deliveries(of id: UploadID) async throws(FerryError) -> [EventDelivery] {
        state.withLock { state in
            state.outbox.filter { $0.event.uploadID == id }.sorted(by: Self.order)
        }
    }

    public func purgeDeliveries(before date: Date) async throws(FerryError) {
        state.withLock { $0.outbox.removeAll { $0.state != .pending && $0.event.createdAt < date } }
    }

    static func pending(_ event: OutboxEvent) -> EventDelivery {
        EventDelivery(event: event, state: .pending, attempts: 0, nextAttemptAt: event.createdAt, lastError: nil, deliveredAt: nil)
    }

    static func order(_ a: EventDelivery, _ b: EventDelivery) -> Bool {
        (a.event.uploadID.rawValue, a.event.destination, a.event.sequence) < (b.event.uploadID.rawValue, b.event.destination, b.event.sequence)
    }
}
