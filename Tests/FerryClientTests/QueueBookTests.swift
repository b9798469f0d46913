@testable import FerryClient
import Foundation
import Testing

@Suite("Upload queue: priorities, limits and the book")
struct QueueBookTests {
    @Test(arguments: [
        ("voice.m4a", UploadPriority.voice), ("/a/b/MSG.OPUS", .voice), ("x.aac", .voice),
        ("IMG_1.HEIC", .image), ("a.jpeg", .image), ("thumb.webp", .image),
        ("clip.MOV", .video), ("v.mp4", .video), ("v.3gp", .video),
        ("notes.txt", .other), ("Makefile", .other), (".hidden", .other), ("dir.jpg/file", .other),
    ])
    func guessesThePriorityFromTheExtension(path: String, priority: UploadPriority) {
        #expect(UploadPriority(guessingFrom: path) == priority)
    }

    @Test func voiceBeforeImageBeforeVideoBeforeOther() {
        #expect(UploadPriority.allCases.sorted(by: >) == [.voice, .image, .video, .other])
    }

    @Test(arguments: [
        // (fixed, network, multiplexed, expected)
        (nil as Int?, NetworkKind.wifi, false, 4), (nil, .wifi, true, 8), (nil, .unknown, false, 4), (nil, .wired, true, 8),
        (nil, .cellular, false, 2), (nil, .cellular, true, 4), (3, .cellular, true, 3), (0, .wifi, false, 1),
    ])
    func chooseTheConcurrency(fixed: Int?, network: NetworkKind, multiplexed: Bool, expected: Int) {
        let configuration = UploadQueue.Configuration(concurrency: fixed)
        #expect(configuration.concurrency(network: network, multiplexed: multiplexed) == expected)
    }

    static func record(_ name: String, _ priority: UploadPriority, length: Int64 = 1) -> QueueRecord {
        QueueRecord(
            id: QueueItemID(rawValue: name), path: "/f/\(name)", endpoint: "http://h/files/", priority: priority, sequence: 0,
            metadata: [], dialect: .tus, length: length, modified: 1, state: .queued
        )
    }

    @Test func nextIsTheHighestPriorityThenTheEarliest() {
        var book = QueueBook()
        for (name, priority) in [("o1", UploadPriority.other), ("v1", .video), ("i1", .image), ("i2", .image), ("s1", .voice)] {
            _ = book.admit(Self.record(name, priority))
        }
        var order: [String] = []
        while let id = book.next() {
            book.start(id)
            order.append(id.rawValue)
        }
        #expect(order == ["s1", "i1", "i2", "v1", "o1"])
        #expect(book.running == 5)
    }

    @Test func admissionKeepsRunningAndDoneMembersAndRequeuesTheRest() {
        var book = QueueBook()
        #expect(book.admit(Self.record("a", .other)) == .added(QueueItemID(rawValue: "a")))
        var again = Self.record("a", .voice)
        again.id = QueueItemID(rawValue: "other-id")
        #expect(book.admit(again) == .existing(QueueItemID(rawValue: "a")))
        #expect(book[QueueItemID(rawValue: "a")]?.priority == .voice, "the higher priority is kept")
        let id = QueueItemID(rawValue: "a")
        book.start(id)
        book.finish(id, .done(url: "http://h/files/1", length: 1, businessStatus: nil, businessResult: nil))
        #expect(book.admit(again) == .existing(id), "done, file unchanged")
        var changed = again
        changed.length = 2
        #expect(book.admit(changed) == .requeued(id), "done, but the file changed")
        #expect(book[id]?.state == .queued && book[id]?.url == nil)
        book.start(id)
        book.finish(id, .failed("no"))
        #expect(book.admit(again) == .requeued(id))
    }

    @Test func aSavedRunningMemberIsQueuedAndSequencesContinue() {
        var book = QueueBook()
        _ = book.admit(Self.record("a", .other))
        _ = book.admit(Self.record("b", .other))
        book.start(QueueItemID(rawValue: "a"))
        let file = book.file
        #expect(file.items.map(\.state) == [.queued, .queued])
        var reopened = QueueBook(file: file)
        #expect(reopened.next() == QueueItemID(rawValue: "a"))
        _ = reopened.admit(Self.record("c", .other))
        #expect(reopened[QueueItemID(rawValue: "c")]?.sequence == 2)
        reopened.finish(QueueItemID(rawValue: "b"), .cancelled)
        reopened.removeSettled()
        #expect(reopened.items.map(\.id.rawValue) == ["a", "c"])
    }
}
