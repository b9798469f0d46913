import FerryCore
import Foundation

/// What every `StatsStore` must do: apply events with the reference semantics
/// (`UploadStats.apply`), filter and page the list with a stable cursor, keep the timeline,
/// aggregate with exact percentiles, count active uploads, and prune.
public enum StatsStoreConformance {
    /// Every check, by name; each runs on a fresh, empty subject.
    public static let checks: [ConformanceCheck<any StatsStore>] = [
        ConformanceCheck("appliesEvents") { try await appliesEvents($0) },
        ConformanceCheck("appliesCoalescedBatchesAlike") { try await appliesCoalescedBatchesAlike($0) },
        ConformanceCheck("filtersAndPages") { try await filtersAndPages($0) },
        ConformanceCheck("aggregatesAHandComputedFixture") { try await aggregatesAHandComputedFixture($0) },
        ConformanceCheck("prunes") { try await prunes($0) },
        ConformanceCheck("countsInstantUploads") { try await countsInstantUploads($0) },
    ]

    static let epoch = Date(timeIntervalSince1970: 1_790_000_000)

    static func at(_ seconds: Double) -> Date { epoch.addingTimeInterval(seconds) }

    static func upload(
        _ seconds: Double, scenario: String = "voice", network: String = "4g", dialect: String = "tus", owner: String? = "alice", length: Int64? = 1000
    ) -> UploadStats {
        UploadStats(
            id: .random(), scenario: scenario, owner: owner, info: RequestInfo(dialect: dialect, client: "ferry", network: network),
            createdAt: at(seconds), length: length
        )
    }

    static func request(_ id: UploadID, _ seconds: Double, _ method: String = "PATCH", offset: Int64, bytes: Int64, _ outcome: String = "ok") -> StatsEvent {
        .request(RequestEntry(upload: id, at: at(seconds), method: method, offset: offset, bytes: bytes, outcome: outcome, seconds: 0.5))
    }

    static func appliesEvents(_ store: any StatsStore) async throws {
        let created = upload(0)
        let id = created.id
        let events: [StatsEvent] = [
            .created(created),
            request(id, 1, offset: 0, bytes: 400, "interrupted"),
            request(id, 2, "HEAD", offset: 400, bytes: 0),
            request(id, 3, offset: 400, bytes: 300, "interrupted"),
            request(id, 4, offset: 700, bytes: 300),
            .completed(id, at: at(5), length: 1000),
            .ended(id, at: at(6), state: .terminated),
            .telemetry(id, json: #"{"stalls":2}"#),
            request(UploadID.random(), 1, offset: 0, bytes: 5),  // unknown upload: dropped
        ]
        try await store.apply(events)
        var expected = created
        for event in events.dropFirst().dropLast() { expected.apply(event) }
        let stored = try await store.stats(of: id)
        try require(stored == expected, "the stored record equals the reference semantics: \(String(describing: stored)) vs \(expected)")
        try require(expected.requests == 4 && expected.interrupted == 2 && expected.resumptions == 2 && expected.bytes == 1000, "the reference counts")
        try require(expected.state == .complete && expected.firstByteAt == at(1) && expected.timeToComplete == 5, "complete stays complete")
        let timeline = try await store.requests(of: id, limit: 10)
        try require(timeline.map(\.method) == ["PATCH", "HEAD", "PATCH", "PATCH"] && timeline.map(\.offset) == [0, 400, 400, 700], "the timeline, oldest first")
        try require(try await store.requests(of: id, limit: 2).map(\.offset) == [400, 700], "the last requests")
        try require(try await store.active(since: at(0)) == 0, "a complete upload is not active")
        try await store.apply([.created(upload(10, length: nil)), request(created.id, 11, offset: 1000, bytes: 0)])
        let open = upload(20)
        try await store.apply([.created(open), request(open.id, 21, offset: 0, bytes: 10)])
        let activeAt20 = try await store.active(since: at(20)), activeAt22 = try await store.active(since: at(22))
        try require(activeAt20 == 1 && activeAt22 == 0, "active: incomplete with a recent request")
    }

    /// The recorder folds a batch (`coalesced()`): the records and timelines must come out the same.
    static func appliesCoalescedBatchesAlike(_ store: any StatsStore) async throws {
        let first = upload(0), second = upload(0)
        func life(_ id: UploadID) -> [StatsEvent] {
            [
                request(id, 1, "POST", offset: 0, bytes: 400, "interrupted"), request(id, 2, "HEAD", offset: 400, bytes: 0),
                request(id, 3, offset: 400, bytes: 600), .completed(id, at: at(4), length: 1000), .telemetry(id, json: "{}"),
            ]
        }
        try await store.apply([.created(first)] + life(first.id))
        let folded = ([StatsEvent.created(second)] + life(second.id)).coalesced()
        try require(folded.count == 4, "one record and three timeline rows: \(folded.count) writes")
        try await store.apply(folded)
        var a = try await store.stats(of: first.id), b = try await store.stats(of: second.id)
        a?.id = second.id
        try require(a != nil && a == b, "the same record either way: \(String(describing: a)) vs \(String(describing: b))")
        b?.id = first.id
        let timelineA = try await store.requests(of: first.id, limit: 10).map { [$0.method, $0.outcome, String($0.offset)] }
        let timelineB = try await store.requests(of: second.id, limit: 10).map { [$0.method, $0.outcome, String($0.offset)] }
        try require(timelineA == timelineB && timelineA.count == 3, "the same timeline either way")
        // Events about an upload created in an earlier batch stay as they are.
        try require([StatsEvent.completed(first.id, at: at(9), length: 1)].coalesced().count == 1, "nothing to fold")
    }

    /// Instant uploads (docs/instant-upload.md): marked whether the mark comes in the creation's
    /// batch (folded) or a later one, and counted with the bytes they did not send.
    static func countsInstantUploads(_ store: any StatsStore) async throws {
        let folded = upload(0, scenario: "forwards", length: 4000), later = upload(0, scenario: "forwards", length: 6000)
        let plain = upload(0, scenario: "forwards", length: 1000)
        func life(_ id: UploadID, _ length: Int64, instant: Bool) -> [StatsEvent] {
            [request(id, 1, offset: 0, bytes: instant ? 0 : length, instant ? "instant" : "ok"), .completed(id, at: at(2), length: length)]
                + (instant ? [.instant(id)] : [])
        }
        try await store.apply(([.created(folded)] + life(folded.id, 4000, instant: true)).coalesced())
        try await store.apply([.created(later), .created(plain)])
        try await store.apply(life(later.id, 6000, instant: true) + life(plain.id, 1000, instant: false))
        let marked = try await store.stats(of: folded.id)?.instant, markedLater = try await store.stats(of: later.id)?.instant
        let unmarked = try await store.stats(of: plain.id)?.instant
        try require(marked == true && markedLater == true && unmarked == false, "the instant mark, folded or not")
        let groups = try await store.aggregate(from: at(-1), to: at(100), by: [.scenario])
        let forwards = groups.first { $0.key["scenario"] == "forwards" }
        try require(forwards?.instant == 2 && forwards?.bytesSaved == 10_000 && forwards?.completed == 3, "two instant, 10000 bytes saved: \(String(describing: forwards))")
    }

    static func filtersAndPages(_ store: any StatsStore) async throws {
        var all: [UploadStats] = []
        for index in 0..<25 {
            var stats = upload(Double(index / 2), scenario: index % 3 == 0 ? "images" : "voice", network: index % 2 == 0 ? "wifi" : "4g")
            stats.owner = index % 5 == 0 ? "bob" : "alice"
            all.append(stats)
        }
        try await store.apply(all.map { .created($0) })
        let done = all.filter { $0.scenario == "images" }.prefix(3).map(\.id)
        try await store.apply(done.map { .completed($0, at: at(30), length: 1000) })
        for query in [
            StatsQuery(limit: 7), StatsQuery(scenario: "images", limit: 3), StatsQuery(network: "wifi", limit: 4),
            StatsQuery(state: .complete, limit: 2), StatsQuery(owner: "bob", limit: 2), StatsQuery(from: at(3), to: at(8), limit: 5),
        ] {
            var reference = all
            for id in done {
                if let index = reference.firstIndex(where: { $0.id == id }) { reference[index].apply(.completed(id, at: at(30), length: 1000)) }
            }
            let expected = reference.filter { query.matches($0) }
                .sorted { (StatsCursor.micros($0.createdAt), $0.id.rawValue) > (StatsCursor.micros($1.createdAt), $1.id.rawValue) }
                .map(\.id)
            var seen: [UploadID] = []
            var current = query
            var pages = 0
            while pages < 50 {
                let page = try await store.uploads(current)
                seen += page.uploads.map(\.id)
                pages += 1
                guard let next = page.next else { break }
                // Uploads created meanwhile (newer) must not shift the pages that follow.
                if pages == 1 { try await store.apply([.created(upload(100))]) }
                current.cursor = next
            }
            try require(seen == expected, "pages of \(query) list every match once, newest first: \(seen.count) of \(expected.count)")
        }
    }

    /// Eight uploads with known timings; the figures are computed by hand in the comments.
    static func aggregatesAHandComputedFixture(_ store: any StatsStore) async throws {
        // voice/4g: complete in 10, 20, 30, 40 s (first byte 1 s after creation; 1000 B each):
        //   goodput 1000/9, 1000/19, 1000/29, 1000/39; one expired, one terminated.
        // voice/wifi: complete in 5 s (first byte at +1: 1000/4 B/s), one still open.
        // images/4g: one outside the window (created at -100).
        var events: [StatsEvent] = []
        func complete(_ network: String, _ seconds: Double, start: Double) {
            let stats = upload(start, network: network)
            events += [.created(stats), request(stats.id, start + 1, offset: 0, bytes: 1000), .completed(stats.id, at: at(start + seconds), length: 1000)]
        }
        for (index, seconds) in [10.0, 20, 30, 40].enumerated() { complete("4g", seconds, start: Double(index)) }
        complete("wifi", 5, start: 5)
        let expired = upload(6), terminated = upload(7), open = upload(8, network: "wifi"), outside = upload(-100, scenario: "images")
        events += [.created(expired), .ended(expired.id, at: at(60), state: .expired), .created(terminated)]
        events += [request(terminated.id, 8, offset: 0, bytes: 200, "interrupted"), request(terminated.id, 9, offset: 200, bytes: 100)]
        events += [.ended(terminated.id, at: at(60), state: .terminated), .created(open), .created(outside)]
        try await store.apply(events)

        let groups = try await store.aggregate(from: at(0), to: at(50), by: [.network])
        let g4 = groups.first { $0.key == ["network": "4g"] }
        let wifi = groups.first { $0.key == ["network": "wifi"] }
        try require(groups.count == 2, "two networks in the window (the one before it is left out): \(groups.map(\.key))")
        try require(g4?.created == 6 && g4?.completed == 4 && g4?.expired == 1 && g4?.terminated == 1 && g4?.open == 0, "4g counts")
        try require(g4?.successRate == 4.0 / 6.0, "4g success rate 4 of 6 ended")
        try require(g4?.timeToComplete == Percentiles(p50: 20, p90: 40, p99: 40), "4g time to complete p50 20 (2nd of 4), p90/p99 40")
        try require(g4?.goodput == Percentiles(p50: 1000.0 / 29, p90: 1000.0 / 9, p99: 1000.0 / 9), "4g goodput percentiles")
        try require(g4?.bytes == 4300 && g4?.resumptionsPerUpload == 1.0 / 6 && g4?.interruptedPerUpload == 1.0 / 6, "4g bytes 4×1000 + 300, one resumption")
        try require(wifi?.created == 2 && wifi?.completed == 1 && wifi?.open == 1 && wifi?.successRate == 1, "wifi: one complete, one open")
        try require(wifi?.timeToComplete.p50 == 5 && wifi?.goodput.p50 == 250, "wifi: 5 s, 1000 B over 4 s")
        let all = try await store.aggregate(from: at(-1000), to: at(1000), by: [])
        try require(all.count == 1 && all[0].created == 9 && all[0].key == [:], "no dimensions: one group of everything")
        let byTwo = try await store.aggregate(from: at(-1000), to: at(1000), by: [.scenario, .network])
        try require(byTwo.count == 3 && byTwo.contains { $0.key == ["scenario": "images", "network": "4g"] && $0.created == 1 }, "two dimensions")
    }

    static func prunes(_ store: any StatsStore) async throws {
        let old = upload(0), recent = upload(100)
        try await store.apply([.created(old), request(old.id, 1, offset: 0, bytes: 1), .created(recent)])
        try await store.prune(before: at(50))
        let oldStats = try await store.stats(of: old.id), oldRequests = try await store.requests(of: old.id, limit: 5)
        try require(oldStats == nil && oldRequests.isEmpty, "the old record and its requests are gone")
        try require(try await store.stats(of: recent.id) != nil, "the recent one stays")
    }
}
