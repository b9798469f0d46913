import FerryCore
import Foundation

/// What every `UploadCatalog` must do for the business layer: keep owners, scenarios, digests
/// and business results; count an owner's usage; write outbox events with their change; hand
/// deliveries out in order, one per upload and webhook, leased.
enum BusinessCatalogConformance {
    /// Every check, by name; each runs on a fresh, empty subject.
    static let checks: [ConformanceCheck<any FullCatalog>] = [
        ConformanceCheck("roundTripsBusinessFields") { try await roundTripsBusinessFields($0) },
        ConformanceCheck("countsUsage") { try await countsUsage($0) },
        ConformanceCheck("claimsAtomically") { try await claimsAtomically($0) },
        ConformanceCheck("listsPendingBusinessResults") { try await listsPendingBusinessResults($0) },
        ConformanceCheck("deliversInOrder") { try await deliversInOrder($0) },
    ]

    static let epoch = UploadCatalogConformance.epoch

    static func record(owner: String? = "alice", length: Int64? = 100, createdAt: Date = epoch) -> UploadRecord {
        UploadRecord(id: .random(), length: length, createdAt: createdAt, scenario: "voice", owner: owner)
    }

    static func event(_ id: UploadID, _ sequence: Int64, _ type: UploadEventType, to destination: String = "http://hooks.test/a") -> OutboxEvent {
        OutboxEvent(uploadID: id, sequence: sequence, type: type, destination: destination, payload: #"{"n":\#(sequence)}"#, createdAt: epoch)
    }

    static func roundTripsBusinessFields(_ catalog: any FullCatalog) async throws {
        var original = record()
        original.eventSequence = 1
        try await catalog.insert(original, events: [event(original.id, 1, .created)])
        try require(try await catalog.get(original.id) == original, "owner, scenario and event sequence read back")
        var complete = original
        complete.offset = 100
        complete.state = .complete
        complete.sha256 = String(repeating: "ab", count: 32)
        complete.business = BusinessResult(status: .done, json: #"{"businessId":"b-1"}"#, attempts: 2, nextAttemptAt: nil)
        complete.eventSequence = 2
        complete.progressEventAt = epoch.addingTimeInterval(3)
        try await catalog.update(complete, events: [event(original.id, 2, .completed)], fence: nil)
        try require(try await catalog.get(original.id) == complete, "digest, business result and progress time read back")
        let deliveries = try await catalog.deliveries(of: original.id)
        try require(deliveries.map(\.event.sequence) == [1, 2], "both events are in the outbox, in order")
        try require(deliveries.allSatisfy { $0.state == .pending && $0.attempts == 0 }, "new events are pending")
        try require(deliveries.first?.event == event(original.id, 1, .created), "an event reads back as written")
    }

    static func countsUsage(_ catalog: any FullCatalog) async throws {
        var first = record(length: 100)
        first.offset = 10
        try await catalog.insert(first)
        try await catalog.insert(record(length: nil, createdAt: epoch.addingTimeInterval(-120)))
        var done = record(length: 50)
        done.state = .complete
        done.offset = 50
        try await catalog.insert(done)
        try await catalog.insert(record(owner: "bob"))
        try await catalog.insert(record(owner: nil))
        // Anonymous uploads count against their client's address, apart from every subject
        // (even one that looks like an address).
        let address = QuotaKey.address("192.0.2.7")
        var anonymous = record(owner: nil, length: 30)
        anonymous.quotaKey = address
        try await catalog.insert(anonymous)
        try await catalog.insert(record(owner: "ip:192.0.2.7"))
        try require(try await catalog.get(anonymous.id)?.quotaKey == address, "the quota key reads back as written")
        let fromAddress = try await catalog.usage(of: address, since: epoch.addingTimeInterval(-60))
        try require(fromAddress == OwnerUsage(openUploads: 1, openBytes: 30, recentCreations: 1), "an address's usage is its own (\(fromAddress))")
        let usage = try await catalog.usage(of: QuotaKey.subject("alice"), since: epoch.addingTimeInterval(-60))
        try require(usage.openUploads == 2, "two incomplete uploads are open (got \(usage.openUploads))")
        try require(usage.openBytes == 100, "open bytes count declared lengths, offsets while deferred (got \(usage.openBytes))")
        try require(usage.recentCreations == 2, "creations in the window are counted (got \(usage.recentCreations))")
        let uncounted = try await catalog.usage(of: QuotaKey.subject("alice"), since: nil)
        try require(uncounted == OwnerUsage(openUploads: 2, openBytes: 100, recentCreations: 0), "without a window creations are not counted (\(uncounted))")
        let nobody = try await catalog.usage(of: QuotaKey.subject("carol"), since: epoch)
        try require(nobody == OwnerUsage(openUploads: 0, openBytes: 0, recentCreations: 0), "an owner without uploads uses nothing")
        // A deferred upload counts the room a running append holds, or its offset when larger;
        // a declared length counts whatever is held.
        var reserving = record(owner: "dave", length: nil)
        reserving.offset = 10
        reserving.reservedTo = 70
        try await catalog.insert(reserving)
        var overtaken = record(owner: "dave", length: nil)
        overtaken.offset = 20
        overtaken.reservedTo = 5
        try await catalog.insert(overtaken)
        var declared = record(owner: "dave", length: 40)
        declared.reservedTo = 90
        try await catalog.insert(declared)
        // A final's bytes are its partials': it counts as an open upload, not as bytes.
        var final = record(owner: "dave", length: 500)
        final.concat = .final([reserving.id, overtaken.id])
        try await catalog.insert(final)
        try require(try await catalog.get(reserving.id)?.reservedTo == 70, "the held room reads back as written")
        let held = try await catalog.usage(of: QuotaKey.subject("dave"), since: nil)
        try require(held.openBytes == 70 + 20 + 40, "held room counts while deferred, a final's length does not (got \(held.openBytes))")
        try require(held.openUploads == 4, "a final is an open upload (got \(held.openUploads))")
        reserving.reservedTo = nil
        try await catalog.update(reserving, events: [], fence: nil)
        let released = try await catalog.usage(of: QuotaKey.subject("dave"), since: nil)
        try require(released.openBytes == 10 + 20 + 40, "a released room counts no more (got \(released.openBytes))")
    }

    /// Claimed inserts hold the quota under concurrency: 40 at once with room for 5 leave 5,
    /// and lengths near 2^63 saturate instead of overflowing.
    static func claimsAtomically(_ catalog: any FullCatalog) async throws {
        let owner = "claims-" + UploadID.random().rawValue
        let now = Date()
        func claim(_ quotas: Quotas, bytes: Int64 = 10) -> QuotaClaim {
            QuotaClaim(owner: QuotaKey.subject(owner), quotas: quotas, bytes: bytes, creating: true, windowStart: now.addingTimeInterval(-60))
        }
        func attempt(_ count: Int, _ quotas: Quotas, length: Int64 = 10) async -> (accepted: Int, refused: Int, other: [String]) {
            await withTaskGroup(of: Result<Void, FerryError>.self) { group in
                for _ in 0..<count {
                    group.addTask {
                        let new = UploadRecord(id: .random(), length: length, createdAt: now, scenario: "voice", owner: owner)
                        do throws(FerryError) {
                            try await catalog.insert(new, events: [], claim: claim(quotas, bytes: length))
                            return .success(())
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                var tally = (accepted: 0, refused: 0, other: [String]())
                for await result in group {
                    switch result {
                    case .success: tally.accepted += 1
                    case .failure(let error) where error.code == .quotaExceeded: tally.refused += 1
                    case .failure(let error): tally.other.append("\(error)")
                    }
                }
                return tally
            }
        }
        let open = await attempt(40, Quotas(openUploads: 5))
        try require(open.other.isEmpty, "claimed inserts fail only on the quota (\(open.other))")
        try require(open.accepted == 5 && open.refused == 35, "40 concurrent claims with open-uploads 5 leave 5 (accepted \(open.accepted))")
        let perMinute = await attempt(40, Quotas(creationsPerMinute: 8))
        try require(perMinute.accepted == 3, "creations-per-minute 8 admits 3 more after 5 (accepted \(perMinute.accepted))")
        let bytes = await attempt(40, Quotas(openBytes: 120))
        try require(bytes.accepted == 4, "open-bytes 120 admits 4 more uploads of 10 bytes after 80 (accepted \(bytes.accepted))")
        let usage = try await catalog.usage(of: QuotaKey.subject(owner), since: now.addingTimeInterval(-60))
        try require(usage.openUploads == 12 && usage.openBytes == 120, "the accepted inserts are all there (\(usage))")
        let huge = await attempt(2, Quotas(openBytes: .max), length: .max)
        try require(huge.other.isEmpty && huge.accepted == 2, "lengths of 2^63 - 1 under a limit of 2^63 - 1 neither overflow nor fail (\(huge))")
        let saturated = try await catalog.usage(of: QuotaKey.subject(owner), since: now.addingTimeInterval(-60))
        try require(saturated.openBytes == .max, "the usage sum saturates at 2^63 - 1 (\(saturated.openBytes))")
    }

    static func listsPendingBusinessResults(_ catalog: any FullCatalog) async throws {
        var due = record()
        due.state = .complete
        due.business = BusinessResult(status: .pending, attempts: 1, nextAttemptAt: epoch)
        try await catalog.insert(due)
        var later = record()
        later.state = .complete
        later.business = BusinessResult(status: .pending, attempts: 1, nextAttemptAt: epoch.addingTimeInterval(600))
        try await catalog.insert(later)
        var done = record()
        done.state = .complete
        done.business = BusinessResult(status: .done, json: "{}")
        try await catalog.insert(done)
        let pending = try await catalog.pendingBusinessResults(before: epoch.addingTimeInterval(1), limit: 10)
        try require(pending.map(\.id) == [due.id], "only due pending results are listed")
    }

    static func deliversInOrder(_ catalog: any FullCatalog) async throws {
        var one = record()
        one.eventSequence = 1
        try await catalog.insert(one, events: [event(one.id, 1, .created), event(one.id, 1, .created, to: "http://hooks.test/b")])
        var next = one
        next.eventSequence = 2
        next.offset = 100
        next.state = .complete
        try await catalog.update(next, events: [event(one.id, 2, .completed)], fence: nil)
        var two = record()
        two.eventSequence = 1
        try await catalog.insert(two, events: [event(two.id, 1, .created)])

        let now = epoch.addingTimeInterval(1)
        let lease = epoch.addingTimeInterval(30)
        let first = try await catalog.claimDeliveries(now: now, leaseUntil: lease, limit: 10)
        let firstKeys = Set(first.map { "\($0.event.id) \($0.event.destination)" })
        try require(
            firstKeys == ["\(one.id)-1 http://hooks.test/a", "\(one.id)-1 http://hooks.test/b", "\(two.id)-1 http://hooks.test/a"],
            "the head of each (upload, webhook) stream is claimed, not the event behind it (got \(firstKeys.sorted()))"
        )
        try require(try await catalog.claimDeliveries(now: now, leaseUntil: lease, limit: 10).isEmpty, "claimed events are leased")

        // Several outcomes in one write (a batched POST), and one alone.
        try await catalog.recordDeliveries([
            DeliveryRecord(eventID: "\(one.id)-1", destination: "http://hooks.test/a", attempts: 1, outcome: .delivered(at: now)),
            DeliveryRecord(
                eventID: "\(one.id)-1", destination: "http://hooks.test/b", attempts: 1, outcome: .retry(at: now.addingTimeInterval(5), error: "answered 500")
            ),
        ])
        try await catalog.recordDelivery(eventID: "\(two.id)-1", destination: "http://hooks.test/a", attempts: 3, outcome: .dead(error: "gone"))
        let second = try await catalog.claimDeliveries(now: now, leaseUntil: lease, limit: 10)
        try require(second.map(\.event.id) == ["\(one.id)-2"], "once delivered, the next event of the stream is due")
        let retried = try await catalog.claimDeliveries(now: now.addingTimeInterval(6), leaseUntil: lease.addingTimeInterval(6), limit: 10)
        try require(retried.map(\.event.destination) == ["http://hooks.test/b"], "a failed attempt is retried at its time")
        try require(retried.first?.attempts == 1 && retried.first?.lastError == "answered 500", "attempts and the last error are kept")

        let states = try await catalog.deliveries(of: two.id)
        try require(states.map(\.state) == [.dead] && states.first?.attempts == 3, "a dead event stays, with its attempts")
        let delivered = try await catalog.deliveries(of: one.id).filter { $0.state == .delivered }
        try require(delivered.count == 1 && delivered.first?.deliveredAt == now, "the delivery time is recorded")

        try await catalog.purgeDeliveries(before: epoch.addingTimeInterval(1))
        try require(try await catalog.deliveries(of: two.id).isEmpty, "a purge forgets dead events")
        try require(try await catalog.deliveries(of: one.id).map(\.state) == [.pending, .pending], "a purge keeps pending events")
    }
}
