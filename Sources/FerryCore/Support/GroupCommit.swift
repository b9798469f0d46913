import Synchronization

/// Runs operations submitted concurrently in batches: one expensive commit (a transaction,
/// an fsync) makes many requests durable at once.
///
/// The first submitter that finds no batch running becomes the leader and runs batches
/// until the queue is empty; the others wait for their result. No background task.
public final class GroupCommit<Input: Sendable, Output: Sendable>: Sendable {
    /// Runs one batch; must return one result per input, in order.
    public typealias Runner = @Sendable ([Input]) async -> [Result<Output, FerryError>]

    private struct Pending {
        var input: Input
        var promise: OneShot<Result<Output, FerryError>>
    }

    private struct State {
        var queue: [Pending] = []
        var leaderActive = false
    }

    private let state = Mutex(State())
    private let maxBatch: Int
    private let runner: Runner

    public init(maxBatch: Int = 256, runner: @escaping Runner) {
        self.maxBatch = maxBatch
        self.runner = runner
    }

    /// Submits one input and waits until the batch holding it has run.
    public func submit(_ input: Input) async throws(FerryError) -> Output {
        let promise = OneShot<Result<Output, FerryError>>()
        let lead = state.withLock { state -> Bool in
            state.queue.append(Pending(input: input, promise: promise))
            if state.leaderActive { return false }
            state.leaderActive = true
            return true
        }
        if lead {
            // The batch carries other requests' work: run it in a task that does not inherit
            // this request's cancellation (a stopped request must not fail their commits).
            await Task { await self.drain() }.value
        }
        return try await promise.value.get()
    }

    private func drain() async {
        while true {
            let batch = state.withLock { state -> [Pending] in
                if state.queue.isEmpty {
                    state.leaderActive = false
                    return []
                }
                let count = min(maxBatch, state.queue.count)
                let batch = Array(state.queue.prefix(count))
                state.queue.removeFirst(count)
                return batch
            }
            if batch.isEmpty { return }
            let results = await runner(batch.map(\.input))
            for (index, pending) in batch.enumerated() {
                let result = index < results.count
                    ? results[index]
                    : .failure(FerryError(.internalError, "group commit runner returned too few results"))
                pending.promise.fulfill(result)
            }
        }
    }
}
