import FerryClock
import Foundation
import Synchronization

/// Runs one request under the stall policy: aborts it when it shows no progress in time,
/// and races a second attempt for body-less requests that have not answered after
/// `raceAfter` (a stalled connection attempt is often just one bad path).
struct RequestRunner: Sendable {
    let transport: any UploadTransport
    let stall: StallPolicy
    let clock: AnyClock

    /// Progress of one request, shared between the transport callback and the watchdog.
    final class Watch: Sendable {
        private struct State {
            var sent: Int64 = 0
            var last: AnyClock.Instant
        }

        private let state: Mutex<State>
        let onSent: @Sendable (Int64) -> Void
        let clock: AnyClock

        init(clock: AnyClock, onSent: @escaping @Sendable (Int64) -> Void) {
            self.clock = clock
            self.state = Mutex(State(last: clock.now))
            self.onSent = onSent
        }

        func record(_ sent: Int64) {
            state.withLock {
                if sent > $0.sent {
                    $0.sent = sent
                    $0.last = clock.now
                }
            }
            onSent(sent)
        }

        var snapshot: (sent: Int64, last: AnyClock.Instant) { state.withLock { ($0.sent, $0.last) } }
    }

    enum Outcome: Sendable {
        case response(TransportResponse)
        case failure(RequestFailure)
    }

    func run(_ request: TransportRequest, goodput: Double?, onSent: @escaping @Sendable (Int64) -> Void = { _ in }) async -> Outcome {
        guard request.body == nil, stall.enabled else {
            return await attempt(request, goodput: goodput, onSent: onSent)
        }
        // Body-less: a second, staggered attempt if the first has not answered by `raceAfter`.
        return await withTaskGroup(of: Outcome?.self) { group in
            group.addTask { await attempt(request, goodput: goodput, onSent: onSent) }
            group.addTask {
                do { try await clock.sleep(for: stall.raceAfter) } catch { return nil }
                return await attempt(request, goodput: goodput, onSent: onSent)
            }
            var failure: Outcome?
            while let next = await group.next() {
                guard let next else { continue }
                switch next {
                case .response, .failure(.status), .failure(.transport), .failure(.untrusted):
                    // An answer, or a fast failure (refused, reset): no need for the other attempt.
                    group.cancelAll()
                    return next
                case .failure(.stalled):
                    failure = failure ?? next
                }
            }
            return failure ?? .failure(.stalled)
        }
    }

    private func attempt(_ request: TransportRequest, goodput: Double?, onSent: @escaping @Sendable (Int64) -> Void) async -> Outcome {
        let watch = Watch(clock: clock, onSent: onSent)
        let bytes = request.body?.count ?? 0
        let transport = self.transport
        return await withTaskGroup(of: Outcome?.self) { group in
            group.addTask {
                do {
                    return .response(try await transport.send(request) { watch.record($0) })
                } catch is CancellationError {
                    return nil
                } catch let error as TransportTrustError {
                    return .failure(.untrusted(error.message))
                } catch {
                    return .failure(.transport(String(describing: error)))
                }
            }
            if stall.enabled {
                group.addTask { await watchdog(watch, bytes: bytes, goodput: goodput) }
            }
            var outcome: Outcome = .failure(.stalled)
            while let next = await group.next() {
                if let next {
                    outcome = next
                    group.cancelAll()
                    break
                }
            }
            group.cancelAll()
            return outcome
        }
    }

    /// Returns `.stalled` when the request stops making progress; nil when cancelled.
    ///
    /// Kernel buffers absorb megabytes, so "bytes handed to the socket" stops meaning progress
    /// once a request is out: a request also has a deadline of about twice its expected
    /// duration at the measured goodput (at least the idle timeout more than it).
    private func watchdog(_ watch: Watch, bytes: Int64, goodput: Double?) async -> Outcome? {
        let start = clock.now
        let idle = stall.idleTimeout(goodput: goodput)
        let firstProgress = stall.network.firstProgressBase
        let deadline = stall.requestDeadline(bytes: bytes, goodput: goodput)
        while true {
            do { try await clock.sleep(for: .milliseconds(200)) } catch { return nil }
            let (sent, last) = watch.snapshot
            let now = clock.now
            if now - start > deadline { return .failure(.stalled) }
            if sent == 0 {
                // Connecting, or waiting for a body-less answer.
                if now - start > (bytes == 0 ? min(stall.connectTimeout, firstProgress) : firstProgress) { return .failure(.stalled) }
            } else if sent < bytes, now - last > idle {
                return .failure(.stalled)
            } else if sent >= bytes, now - last > idle + firstProgress {
                return .failure(.stalled)
            }
        }
    }
}
