import Synchronization

/// The end of one stream of an adaptive parallel upload, which another stream may take part of.
///
/// A stream is a tus `partial` upload created with a deferred length, so where it ends is
/// decided late: the session asks for room before each request (`grant`), and a split gives the
/// tail that no request has claimed yet to a new stream. The end is frozen once a request
/// reaches it (that request declares the length to the server), and never while the new end
/// is not yet persisted (`persisted()`), so a restarted process never meets a server length
/// its plan does not know.
public final class SplitBound: Sendable {
    struct State {
        var limit: Int64
        /// The highest end any request was allowed to reach.
        var issued: Int64
        var frozen = false
        var persistPending = false
    }

    /// Where the stream starts in the file.
    public let start: Int64
    private let state: Mutex<State>

    /// A restarted stream claims nothing: its session asks again from the server's offset.
    public init(start: Int64, limit: Int64, frozen: Bool = false) {
        self.start = start
        self.state = Mutex(State(limit: limit, issued: frozen ? limit : start, frozen: frozen))
    }

    /// File offsets: the end (exclusive), and whether it can no longer move.
    public var snapshot: (limit: Int64, issued: Int64, frozen: Bool) {
        state.withLock { ($0.limit, $0.issued, $0.frozen) }
    }

    /// Room for the next request from `acknowledged` (relative to `start`), about `size` bytes:
    /// returns how many bytes of the stream may be sent so far and whether that is the end.
    public func grant(acknowledged: Int64, size: Int64) -> (available: Int64, finished: Bool) {
        state.withLock { state in
            let wanted = min(state.limit, start + acknowledged + max(size, 1))
            state.issued = max(state.issued, wanted)
            let finished = state.issued == state.limit && !state.persistPending
            if finished { state.frozen = true }
            return (state.issued - start, finished)
        }
    }

    /// Gives the tail after `proposed` (or after what is already claimed, if later) to a new
    /// stream; nil when that tail would be shorter than `minimum` or the end is frozen.
    /// Call `persisted()` once the new end is saved.
    public func split(at proposed: Int64, minimum: Int64) -> Range<Int64>? {
        state.withLock { state in
            guard !state.frozen else { return nil }
            let cut = max(proposed, state.issued)
            guard state.limit - cut >= minimum else { return nil }
            let tail = cut..<state.limit
            state.limit = cut
            state.persistPending = true
            return tail
        }
    }

    /// The server knows the length already: the end can no longer move.
    public func freeze() {
        state.withLock { state in
            state.frozen = true
            state.issued = state.limit
        }
    }

    /// The new end could not be saved: the split is undone.
    public func restore(limit: Int64) {
        state.withLock { state in
            state.limit = limit
            state.persistPending = false
        }
    }

    public func persisted() {
        state.withLock { $0.persistPending = false }
    }

    /// Bytes no request has claimed yet.
    public var unclaimed: Int64 {
        state.withLock { $0.frozen ? 0 : $0.limit - $0.issued }
    }
}
