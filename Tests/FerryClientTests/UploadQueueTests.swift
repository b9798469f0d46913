@testable import FerryClient
import Foundation
import HTTPTypes
import Testing

/// Files in a temporary folder, and the folder a queue keeps its state in.
struct QueueFixture {
    static let endpoint = URL(string: "http://127.0.0.1:1/files/")!
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-queue-\(UUID().uuidString)")
    var queueDirectory: URL { root.appendingPathComponent("queue") }

    init() throws {
        try FileManager.default.createDirectory(at: root.appendingPathComponent("files"), withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(at: root) }

    func path(_ name: String) -> String { root.appendingPathComponent("files/\(name)").path }

    /// A file of `size` bytes named `name`.
    @discardableResult
    func file(_ name: String, size: Int = 10) throws -> String {
        try Data(repeating: UInt8(name.utf8.count), count: size).write(to: URL(fileURLWithPath: path(name)))
        return path(name)
    }

    /// A queue over `server`: no stall detection (requests are held on purpose), no checksums.
    func queue(_ server: FakeTusServer, _ configure: (inout UploadQueue.Configuration) -> Void = { _ in }) async throws -> UploadQueue {
        var configuration = UploadQueue.Configuration()
        configuration.options.stall.enabled = false
        configuration.options.checksums = false
        configure(&configuration)
        return try await UploadQueue(directory: queueDirectory, transport: server, configuration: configuration)
    }

    /// Creates the file (unless it exists) and enqueues it, named in its metadata.
    @discardableResult
    func enqueue(_ queue: UploadQueue, _ name: String, size: Int = 10, priority: UploadPriority? = nil) async throws -> QueueItemID {
        if !FileManager.default.fileExists(atPath: path(name)) { try file(name, size: size) }
        return try await queue.enqueue(file: path(name), endpoint: Self.endpoint, priority: priority, metadata: [("filename", name)])
    }
}

extension FakeTusServer {
    /// The files created (POST), in order.
    var created: [String] { log.filter { $0.method == .post }.compactMap(\.name) }
}

@Suite("Upload queue", .timeLimit(.minutes(1)))
struct UploadQueueTests {
    @Test func startsTheHighestPriorityFirstAndFIFOWithinOne() async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer()
        let queue = try await fixture.queue(server) { $0.concurrency = 1 }
        for name in ["notes.txt", "clip.mp4", "a.jpg", "voice.m4a", "b.JPG", "c.png"] {
            try await fixture.enqueue(queue, name)
        }
        let summary = await queue.run()
        #expect(summary.succeeded)
        #expect(server.created == ["voice.m4a", "a.jpg", "b.JPG", "c.png", "clip.mp4", "notes.txt"])
    }

    @Test func runsAtMostTheLimitAtOnceAndReachesIt() async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer(holding: [.post])
        let queue = try await fixture.queue(server) { $0.concurrency = 3 }
        for index in 0..<10 { try await fixture.enqueue(queue, "f\(index).bin") }
        async let summary = queue.run()
        for remaining in stride(from: 10, to: 0, by: -1) {
            await server.wait { $0.held.count >= min(3, remaining) }
            server.release()
        }
        #expect(await summary.done == 10)
        #expect(server.maximumHeld == 3)
    }

    @Test func aLaterUrgentItemOvertakesQueuedOnes() async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer(holding: [.post])
        let queue = try await fixture.queue(server) { $0.concurrency = 1 }
        for name in ["a.bin", "b.bin", "c.bin"] { try await fixture.enqueue(queue, name) }
        async let summary = queue.run()
        await server.wait { $0.held.count == 1 }
        try await fixture.enqueue(queue, "voice.opus")
        for _ in 0..<4 {
            await server.wait { $0.held.count == 1 }
            server.release()
        }
        #expect(await summary.done == 4)
        #expect(server.created == ["a.bin", "voice.opus", "b.bin", "c.bin"])
    }

    @Test func aNewQueueOnTheSameDirectoryFinishesTheRestWithoutResending() async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer(holding: [.patch])
        let configure: (inout UploadQueue.Configuration) -> Void = {
            $0.concurrency = 1
            $0.singleRequestLimit = 4
            $0.options.chunk = .fixed(4)
        }
        let first = try await fixture.queue(server, configure)
        let small = try await fixture.enqueue(first, "small.bin", size: 3, priority: .voice)
        let large = try await fixture.enqueue(first, "large.bin", size: 10, priority: .image)
        try await fixture.enqueue(first, "later1.bin", size: 3)
        try await fixture.enqueue(first, "later2.bin", size: 3)
        async let stopped = first.run()
        // large.bin: created, its first 4 bytes acknowledged, the next 4 on their way: stop.
        await server.wait { $0.held.count == 1 }
        server.release()
        await server.wait { $0.held.count == 1 && $0.log.filter { $0.method == .patch }.count == 2 }
        first.stop()
        let before = await stopped
        #expect(before[small]?.state == .done)
        #expect(before[large]?.state == .queued)
        #expect(before.unfinished == 3)
        let smallURL = try #require(before[small]?.url)

        server.releaseAll()
        let already = server.log.count
        let second = try await fixture.queue(server, configure)
        #expect(second.snapshot[small]?.state == .done)
        #expect(second.snapshot[small]?.url == smallURL)
        let summary = await second.run()
        #expect(summary.succeeded)
        let requests = server.log[already...]
        #expect(!requests.contains { $0.name == "small.bin" }, "a finished member is not sent again")
        #expect(requests.filter { $0.name == "large.bin" }.map(\.method) == [.head, .patch, .patch])
        #expect(requests.filter { $0.name == "large.bin" }.first { $0.method == .patch }?.range == 4..<8)
        #expect(Set(server.created) == ["small.bin", "large.bin", "later1.bin", "later2.bin"])
        #expect(server.created.count == 4)
        #expect(summary[small]?.url == smallURL)
        #expect(server.state.withLock { $0.uploads.values.allSatisfy { $0.offset == $0.length } })
    }

    @Test func cancellingTheRunsTaskStopsWithoutCancellingMembers() async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer(holding: [.post])
        let queue = try await fixture.queue(server) { $0.concurrency = 2 }
        for index in 0..<4 { try await fixture.enqueue(queue, "f\(index).jpg") }
        let running = Task { await queue.run() }
        await server.wait { $0.held.count == 2 }
        running.cancel()
        let summary = await running.value
        #expect(summary.unfinished == 4)
        #expect(summary.items.allSatisfy { $0.state == .queued })
        #expect(!server.log.contains { $0.method == .delete })
        server.releaseAll()
        #expect(await queue.run().succeeded, "the same queue runs them later")
    }

    @Test func aMemberUploadedButNotYetSavedAsDoneIsFoundCompleteNotSentAgain() async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer()
        let store = ResumeStore(directory: fixture.queueDirectory.appendingPathComponent("resume"))
        let path = try fixture.file("photo.jpg", size: 100)
        // What a member leaves when the process dies between its last answer and the queue's write.
        var options = UploadOptions(resumeStore: store)
        options.metadata = [("filename", "photo.jpg")]
        options.keepsResumeRecord = true
        let uploaded = try await Upload(file: path, endpoint: QueueFixture.endpoint, transport: server, options: options).run()
        let fingerprint = try #require(uploaded.keptResumeRecord)
        #expect(store.load(fingerprint) != nil)

        let queue = try await fixture.queue(server)
        let id = try await fixture.enqueue(queue, "photo.jpg")
        let already = server.log.count
        let summary = await queue.run()
        #expect(summary[id]?.url == uploaded.url)
        #expect(server.log[already...].map(\.method) == [.head])
        #expect(store.load(fingerprint) == nil, "removed once saved as done")
    }

    @Test func cancelsAQueuedAndARunningMemberAndTerminatesIt() async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer(holding: [.patch])
        let queue = try await fixture.queue(server) {
            $0.concurrency = 1
            $0.singleRequestLimit = 4
            $0.options.chunk = .fixed(4)
        }
        let running = try await fixture.enqueue(queue, "large.bin", size: 10, priority: .voice)
        let queued = try await fixture.enqueue(queue, "q.jpg", size: 3)
        let last = try await fixture.enqueue(queue, "r.bin", size: 3)
        async let summary = queue.run()
        await server.wait { $0.held.count == 1 }
        await queue.cancel(queued)
        #expect(queue.snapshot[queued]?.state == .cancelled)
        await queue.cancel(running)
        let result = await summary
        #expect(result[running]?.state == .cancelled)
        #expect(result[queued]?.state == .cancelled)
        #expect(result[last]?.state == .done)
        #expect(server.log.contains { $0.method == .delete && $0.name == "large.bin" })
        #expect(!server.created.contains("q.jpg"))
        // Saved: a new queue reports them cancelled and runs nothing.
        let count = server.log.count
        let reopened = try await fixture.queue(server)
        #expect(await reopened.run()[queued]?.state == .cancelled)
        #expect(server.log.count == count)
    }

    @Test func cancelAllEndsTheRun() async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer(holding: [.post])
        let queue = try await fixture.queue(server) { $0.concurrency = 2 }
        for index in 0..<5 { try await fixture.enqueue(queue, "f\(index).jpg") }
        async let summary = queue.run()
        await server.wait { $0.held.count == 2 }
        await queue.cancelAll()
        let result = await summary
        #expect(result.cancelled == 5)
        #expect(result.done == 0)
        #expect(server.maximumHeld == 2)
    }

    @Test func progressTotalsAddUp() async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer()
        let queue = try await fixture.queue(server) { $0.concurrency = 2 }
        let sizes = [3, 1_000, 70_000, 5, 250_000]
        for (index, size) in sizes.enumerated() { try await fixture.enqueue(queue, "f\(index).bin", size: size) }
        let updates = queue.updates()
        async let summary = queue.run()
        var seen: [QueueProgress] = []
        for await progress in updates { seen.append(progress) }
        _ = await summary
        let total = Int64(sizes.reduce(0, +))
        #expect(seen.allSatisfy { $0.total == total && $0.filesTotal == sizes.count })
        #expect(seen.allSatisfy { $0.acknowledged <= $0.total && $0.filesRunning <= 2 })
        #expect(zip(seen, seen.dropFirst()).allSatisfy { $0.filesDone <= $1.filesDone })
        let last = try #require(seen.last)
        #expect(last.acknowledged == total)
        #expect(last.filesDone == sizes.count)
        #expect(last.items.allSatisfy { $0.acknowledged == $0.length && $0.url != nil })
    }

    @Test func aNetworkChangeLowersAndRaisesTheLimit() async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer(holding: [.post])
        let queue = try await fixture.queue(server) { $0.options.network = .wifi }
        for index in 0..<12 { try await fixture.enqueue(queue, "f\(index).jpg") }
        async let summary = queue.run()
        await server.wait { $0.held.count == 4 }
        #expect(queue.snapshot.concurrency == 4)
        queue.networkChanged(to: .cellular)
        #expect(queue.snapshot.concurrency == 2)
        // Each running upload drops its request and sends it again from the new network's
        // defaults; they go on, and none starts until fewer than two run.
        await server.wait { state in state.held.count == 4 && state.log.filter { $0.method == .post }.count == 8 }
        server.release()
        server.release()
        server.resetMaximum()
        for _ in 0..<4 {
            await server.wait { $0.held.count >= 2 }
            server.release()
        }
        #expect(server.maximumHeld == 2)
        queue.networkChanged(to: .wifi)
        await server.wait { $0.held.count == 4 }
        #expect(queue.snapshot.concurrency == 4)
        server.releaseAll()
        #expect(await summary.done == 12)
    }

    @Test(arguments: [(HTTPProtocolVersion.http2, 5), (.http1_1, 2)])
    func anHTTP2AnswerRaisesTheLimit(version: HTTPProtocolVersion, limit: Int) async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer(holding: [.post], version: version)
        let queue = try await fixture.queue(server) {
            $0.http1Concurrency = 2
            $0.http2Concurrency = 5
        }
        for index in 0..<10 { try await fixture.enqueue(queue, "f\(index).jpg") }
        async let summary = queue.run()
        // The first members' discovery (OPTIONS, not held) answered over `version`.
        await server.wait { $0.held.count == limit }
        #expect(queue.snapshot.concurrency == limit)
        #expect(queue.snapshot.httpVersion == version)
        for remaining in stride(from: 10, to: 0, by: -1) {
            await server.wait { $0.held.count >= min(limit, remaining) }
            server.release()
        }
        #expect(await summary.done == 10)
        #expect(server.maximumHeld == limit)
    }

    @Test func smallFilesGoAsOneCreationWithUploadAfterOneDiscovery() async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer()
        // The unknown network starts from 2 MiB requests: the 3 MiB file still goes whole.
        let queue = try await fixture.queue(server) { $0.concurrency = 1 }
        try await fixture.enqueue(queue, "a.bin", size: 100)
        try await fixture.enqueue(queue, "b.bin", size: 3 << 20)
        try await fixture.enqueue(queue, "c.bin", size: 5 << 20)
        #expect(await queue.run().succeeded)
        let entries = server.log
        #expect(entries.prefix(4).map(\.method) == [.options, .post, .post, .post])
        #expect(entries[1].range == 0..<100)
        #expect(entries[2].range == 0..<(3 << 20))
        // Above the limit: created empty, then the sizer's requests.
        #expect(entries[3].range == nil)
        #expect(entries.count > 4 && entries.dropFirst(4).allSatisfy { $0.method == .patch })
    }

    @Test func aFailedMemberDoesNotStopTheOthers() async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer()
        server.refuse("bad.jpg")
        let queue = try await fixture.queue(server) { $0.concurrency = 2 }
        let bad = try await fixture.enqueue(queue, "bad.jpg")
        for index in 0..<4 { try await fixture.enqueue(queue, "f\(index).jpg") }
        let summary = await queue.run()
        #expect(summary.done == 4)
        #expect(summary.failed == 1)
        #expect(summary[bad]?.state == .failed)
        #expect(summary[bad]?.error?.contains("403") == true)
        // Enqueued again, a failed member is retried under the same id.
        server.state.withLock { $0.refused = [] }
        #expect(try await fixture.enqueue(queue, "bad.jpg") == bad)
        #expect(await queue.run()[bad]?.state == .done)
    }

    @Test func enqueueingTheSameFileAgainReturnsItsMember() async throws {
        let fixture = try QueueFixture()
        defer { fixture.remove() }
        let server = FakeTusServer()
        let queue = try await fixture.queue(server)
        let id = try await fixture.enqueue(queue, "a.jpg")
        #expect(try await fixture.enqueue(queue, "a.jpg", priority: .voice) == id)
        #expect(queue.snapshot[id]?.priority == .voice)
        #expect(await queue.run().done == 1)
        #expect(try await fixture.enqueue(queue, "a.jpg") == id)
        #expect(queue.snapshot[id]?.state == .done, "done with the file unchanged: nothing to send")
        #expect(server.created == ["a.jpg"])
        await #expect(throws: UploadQueueError.self) {
            try await queue.enqueue(file: fixture.root.path, endpoint: QueueFixture.endpoint)
        }
    }
}
