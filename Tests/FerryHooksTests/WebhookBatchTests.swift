import FerryCore
import Foundation
import Testing

@testable import FerryHooks

/// A pending delivery of event `sequence` of the upload whose id is `letter` repeated.
func delivery(_ letter: String, _ sequence: Int64, to url: String) -> EventDelivery {
    let event = OutboxEvent(
        uploadID: UploadID(String(repeating: letter, count: 16))!, sequence: sequence, type: .created, destination: url, payload: "{}",
        createdAt: Date(timeIntervalSince1970: 0)
    )
    return EventDelivery(event: event, state: .pending, attempts: 0, nextAttemptAt: Date(timeIntervalSince1970: 0), lastError: nil, deliveredAt: nil)
}

@Suite("Webhook batches: how claimed events are cut into POSTs")
struct WebhookBatchTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        /// `letter-sequence@webhook`, in claim order.
        var claimed: [String]
        var batchSizes: [String: Int]
        /// Each POST as `letter-sequence` of its events.
        var postings: [[String]]
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        Row(name: "nothing claimed, nothing posted", claimed: [], batchSizes: ["one": 5], postings: []),
        Row(name: "each webhook gets POSTs of at most its batch size, in claim order",
            claimed: ["a-1@one", "b-1@two", "c-3@one", "d-2@one", "e-1@two", "f-1@one"], batchSizes: ["one": 3, "two": 1],
            postings: [["a-1", "c-3", "d-2"], ["f-1"], ["b-1"], ["e-1"]]),
        Row(name: "an unknown webhook is posted one event at a time", claimed: ["a-1@gone", "b-1@gone"], batchSizes: [:], postings: [["a-1"], ["b-1"]]),
        Row(name: "a batch larger than the claim is one POST", claimed: ["a-1@one", "b-1@one"], batchSizes: ["one": 100], postings: [["a-1", "b-1"]]),
        Row(name: "a claim of exactly two batches", claimed: ["a-1@one", "b-1@one", "c-1@one", "d-1@one"], batchSizes: ["one": 2],
            postings: [["a-1", "b-1"], ["c-1", "d-1"]]),
        Row(name: "webhooks are served in the order they first appear",
            claimed: ["a-1@two", "b-1@one", "c-1@three", "d-1@one"], batchSizes: ["one": 2, "two": 2, "three": 2],
            postings: [["a-1"], ["b-1", "d-1"], ["c-1"]]),
        Row(name: "batch size 1 keeps every event alone", claimed: ["a-1@one", "b-1@one"], batchSizes: ["one": 1], postings: [["a-1"], ["b-1"]]),
    ]

    @Test(arguments: rows)
    func row(_ row: Row) {
        let claimed = row.claimed.map { text in
            let (event, url) = (text.split(separator: "@")[0], String(text.split(separator: "@")[1]))
            let parts = event.split(separator: "-")
            return delivery(String(parts[0]), Int64(parts[1])!, to: url)
        }
        let postings = WebhookDispatcher.postings(claimed, batchSizes: row.batchSizes)
        #expect(postings.map { $0.map { "\($0.event.uploadID.rawValue.prefix(1))-\($0.event.sequence)" } } == row.postings)
        // Every claimed delivery is posted exactly once, and a POST goes to one webhook.
        #expect(postings.flatMap { $0 }.map(\.event.id).sorted() == claimed.map(\.event.id).sorted())
        #expect(postings.allSatisfy { Set($0.map(\.event.destination)).count == 1 })
    }
}
