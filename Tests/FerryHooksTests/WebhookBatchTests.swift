import FerryCore
import Foundation
import Testing

@testable import FerryHooks

@Suite("Webhook batches: how claimed events are cut into POSTs")
struct WebhookBatchTests {
    /// A pending delivery of event `sequence` of the upload whose id is `letter` repeated.
    func delivery(_ letter: String, _ sequence: Int64, to url: String) -> EventDelivery {
        let event = OutboxEvent(
            uploadID: UploadID(String(repeating: letter, count: 16))!, sequence: sequence, type: .created, destination: url, payload: "{}",
            createdAt: Date(timeIntervalSince1970: 0)
        )
        return EventDelivery(event: event, state: .pending, attempts: 0, nextAttemptAt: Date(timeIntervalSince1970: 0), lastError: nil, deliveredAt: nil)
    }

    @Test func eachWebhookGetsPostsOfAtMostItsBatchSizeInClaimOrder() {
        let claimed = [
            delivery("a", 1, to: "http://one"), delivery("b", 1, to: "http://two"), delivery("c", 3, to: "http://one"),
            delivery("d", 2, to: "http://one"), delivery("e", 1, to: "http://two"), delivery("f", 1, to: "http://one"),
        ]
        let postings = WebhookDispatcher.postings(claimed, batchSizes: ["http://one": 3, "http://two": 1])
        #expect(postings.map { $0.map { "\($0.event.uploadID.rawValue.prefix(1))-\($0.event.sequence)" } } == [["a-1", "c-3", "d-2"], ["f-1"], ["b-1"], ["e-1"]])
    }

    @Test func anUnknownWebhookIsPostedOneEventAtATime() {
        let claimed = [delivery("a", 1, to: "http://gone"), delivery("b", 1, to: "http://gone")]
        #expect(WebhookDispatcher.postings(claimed, batchSizes: [:]).map(\.count) == [1, 1])
        #expect(WebhookDispatcher.postings([], batchSizes: [:]).isEmpty)
    }
}
