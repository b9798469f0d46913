import Foundation
import Synchronization

/// The streams of an adaptive parallel upload: their ranges (`SplitBound`), their upload URLs,
/// which are complete, and the persisted `SplitPlan` that lets a new process continue them.
final class SplitBook: Sendable {
    private struct State {
        var plan: SplitPlan
        var bounds: [SplitBound]
    }

    private let state: Mutex<State>
    private let store: ResumeStore?
    /// Bytes of segments an earlier process completed.
    let restoredBytes: Int64

    /// Continues the persisted plan for this file, or starts one stream over the whole file.
    init(upload: Upload, length: Int64) async throws(UploadError) {
        var fingerprint = ""
        if let store = upload.options.resumeStore {
            do {
                fingerprint = try await ResumeStore.fingerprint(path: upload.path, endpoint: upload.endpoint)
            } catch {
                throw UploadError.localFile("\(upload.path): \(error.localizedDescription)")
            }
            self.store = store
        } else {
            self.store = nil
        }
        var plan = SplitPlan(
            fingerprint: fingerprint, endpoint: upload.endpoint.absoluteString, length: length,
            segments: [SplitPlan.Segment(start: 0, limit: length)]
        )
        if let store, let saved = store.loadPlan(fingerprint), saved.length == length,
            saved.endpoint == upload.endpoint.absoluteString, saved.isConsistent
        {
            plan = saved
        }
        let bounds = plan.segments.map { SplitBound(start: $0.start, limit: $0.limit, frozen: $0.complete) }
        self.restoredBytes = plan.segments.filter(\.complete).reduce(0) { $0 + $1.limit - $1.start }
        self.state = Mutex(State(plan: plan, bounds: bounds))
    }

    /// By index (the order streams were added), not file order.
    var segments: [SplitPlan.Segment] { state.withLock { $0.plan.segments } }
    var running: Int { state.withLock { $0.plan.segments.filter { !$0.complete }.count } }
    var allComplete: Bool { state.withLock { $0.plan.segments.allSatisfy(\.complete) } }

    func bound(_ index: Int) -> SplitBound { state.withLock { $0.bounds[index] } }

    /// A stream's upload exists on the server (recorded the first time).
    func located(_ index: Int, url: URL) {
        state.withLock { state in
            guard state.plan.segments[index].uploadURL != url.absoluteString else { return }
            state.plan.segments[index].uploadURL = url.absoluteString
            save(state.plan)
        }
    }

    func completed(_ index: Int) {
        state.withLock { state in
            state.plan.segments[index].complete = true
            save(state.plan)
        }
    }

    /// Gives half the unclaimed tail of the stream with the most of it to a new segment, and
    /// persists the new plan before either stream may use its new range. Returns the new
    /// segment's index; nil when no stream has `2 × minimum` unclaimed.
    func split(minimum: Int64) -> Int? {
        state.withLock { state in
            let candidates = state.plan.segments.indices.filter { !state.plan.segments[$0].complete }
            guard let donor = candidates.max(by: { state.bounds[$0].unclaimed < state.bounds[$1].unclaimed }) else { return nil }
            let bound = state.bounds[donor]
            let unclaimed = bound.unclaimed
            guard unclaimed >= 2 * minimum else { return nil }
            let before = bound.snapshot.limit
            guard let tail = bound.split(at: before - unclaimed / 2, minimum: minimum) else { return nil }
            var plan = state.plan
            plan.segments[donor].limit = tail.lowerBound
            plan.segments.append(SplitPlan.Segment(start: tail.lowerBound, limit: tail.upperBound))
            guard save(plan) else {
                bound.restore(limit: before)
                return nil
            }
            state.plan = plan
            state.bounds.append(SplitBound(start: tail.lowerBound, limit: tail.upperBound))
            bound.persisted()
            return plan.segments.count - 1
        }
    }

    /// The upload is done: nothing to continue.
    func forget() {
        guard let store else { return }
        store.remove(state.withLock { $0.plan.fingerprint })
    }

    @discardableResult
    private func save(_ plan: SplitPlan) -> Bool {
        guard let store else { return true }
        var plan = plan
        plan.updatedAt = Date()
        return (try? store.savePlan(plan)) != nil
    }
}
