import FerryCore
import Synchronization
import Testing

@Suite("Group commit")
struct GroupCommitTests {
    @Test func batchesConcurrentSubmissions() async throws {
        let batches = Mutex<[Int]>([])
        let commit = GroupCommit<Int, Int> { inputs in
            batches.withLock { $0.append(inputs.count) }
            try? await Task.sleep(for: .milliseconds(20))
            return inputs.map { .success($0 * 2) }
        }
        let results = try await withThrowingTaskGroup(of: Int.self) { group in
            for value in 0..<50 { group.addTask { try await commit.submit(value) } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(results.sorted() == (0..<50).map { $0 * 2 })
        #expect(batches.withLock { $0.count } < 50)
    }

    @Test func aCancelledLeaderDoesNotFailTheBatch() async throws {
        let commit = GroupCommit<Int, Int> { inputs in
            try? await Task.sleep(for: .milliseconds(50))
            if Task.isCancelled { return inputs.map { _ in .failure(FerryError(.internalError, "cancelled")) } }
            return inputs.map { .success($0) }
        }
        let leader = Task { try await commit.submit(1) }
        try await Task.sleep(for: .milliseconds(10))
        let follower = Task { try await commit.submit(2) }
        leader.cancel()
        #expect(try await leader.value == 1)
        #expect(try await follower.value == 2)
    }

    @Test func failuresStayWithTheirInput() async throws {
        let commit = GroupCommit<Int, Int> { inputs in
            inputs.map { $0 % 2 == 0 ? .success($0) : .failure(FerryError(.catalogFailure, "odd")) }
        }
        #expect(try await commit.submit(4) == 4)
        await #expect(throws: FerryError.self) { try await commit.submit(3) }
    }
}
