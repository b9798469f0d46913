@testable import FerryClient
import Foundation
import Testing

let uploadURL = URL(string: "http://127.0.0.1:8080/files/abc")!
let ferryCapabilities = ServerCapabilities(extensions: ["creation", "creation-with-upload", "termination", "checksum"])

/// Drives a machine through events, returning every action.
func run(_ machine: inout UploadMachine, _ events: [UploadMachine.Event], elapsed: Duration = .zero) -> [UploadMachine.Action] {
    events.map { machine.handle($0, elapsed: elapsed, random: 0.5) }
}

@Suite("Upload state machine")
struct UploadMachineTests {
    @Test func smallFileInOneRequest() {
        var machine = UploadMachine(length: 1000)
        let actions = run(&machine, [.start(resume: nil), .discovered(ferryCapabilities), .created(uploadURL, offset: 1000)])
        #expect(actions == [.discover, .create(firstChunk: 0..<1000), .finish(uploadURL)])
        #expect(machine.phase == .completed)
    }

    @Test func largeFileInChunks() {
        var machine = UploadMachine(length: 10 << 20, sizer: ChunkSizer(configuration: .fixed(4 << 20)))
        let actions = run(&machine, [
            .start(resume: nil), .discovered(ferryCapabilities), .created(uploadURL, offset: 0),
            .sent(offset: 4 << 20, duration: .seconds(1)), .sent(offset: 8 << 20, duration: .seconds(1)),
            .sent(offset: 10 << 20, duration: .seconds(1)),
        ])
        let mib: Int64 = 1 << 20
        let expected: [UploadMachine.Action] = [
            .discover, .create(firstChunk: nil), .send(uploadURL, 0..<(4 * mib)), .send(uploadURL, (4 * mib)..<(8 * mib)),
            .send(uploadURL, (8 * mib)..<(10 * mib)), .finish(uploadURL),
        ]
        #expect(actions == expected)
    }

    @Test func withoutCreationWithUploadTheFirstChunkIsAPatch() {
        var machine = UploadMachine(length: 1000)
        let actions = run(&machine, [.start(resume: nil), .discovered(ServerCapabilities(extensions: ["creation"])), .created(uploadURL, offset: 0)])
        #expect(actions == [.discover, .create(firstChunk: nil), .send(uploadURL, 0..<1000)])
    }

    @Test func resumesFromAPersistedURL() {
        var machine = UploadMachine(length: 5000)
        let actions = run(&machine, [.start(resume: uploadURL), .located(offset: 3000)])
        #expect(actions == [.locate(uploadURL), .send(uploadURL, 3000..<5000)])
    }

    @Test func aStallWaitsThenReReadsTheOffsetAndShrinksRequests() {
        var machine = UploadMachine(length: 100 << 20, sizer: ChunkSizer(network: .wifi))
        _ = run(&machine, [.start(resume: uploadURL), .located(offset: 0)])
        let before = machine.sizer.size
        let actions = run(&machine, [.failed(.stalled), .waited, .located(offset: 1 << 20)])
        guard case .wait = actions[0] else {
            Issue.record("expected a wait, got \(actions[0])")
            return
        }
        #expect(actions[1] == .locate(uploadURL))
        #expect(machine.sizer.size < before)
        #expect(actions[2] == .send(uploadURL, (1 << 20)..<((1 << 20) + machine.sizer.size)))
    }

    @Test func aConnectionResetKeepsTheRequestSize() {
        var machine = UploadMachine(length: 100 << 20, sizer: ChunkSizer(network: .wifi))
        _ = run(&machine, [.start(resume: uploadURL), .located(offset: 0)])
        let before = machine.sizer.size
        let actions = run(&machine, [.failed(.transport("reset")), .waited, .located(offset: 1 << 20)])
        #expect(actions[0] == .wait(.zero), "the first retry goes at once")
        #expect(machine.sizer.size == before)
        #expect(actions[2] == .send(uploadURL, (1 << 20)..<((1 << 20) + before)))
    }

    @Test func progressResetsTheAttemptCounter() {
        var machine = UploadMachine(length: 100, retry: .typicalTusClient)
        _ = run(&machine, [.start(resume: uploadURL), .located(offset: 0)])
        for offset in [10, 20, 30, 40, 50, 60] {
            _ = run(&machine, [.failed(.transport("reset")), .waited, .located(offset: Int64(offset))])
        }
        #expect(machine.phase == .sending)
        // Without progress the typical schedule gives up after four retries.
        let actions = run(&machine, Array(repeating: .failed(.transport("reset")), count: 5))
        #expect(actions.last == .fail(.gaveUp(attempts: 5, lastFailure: "transport: reset")))
    }

    @Test func conflictReReadsTheOffsetAtOnce() {
        var machine = UploadMachine(length: 100)
        _ = run(&machine, [.start(resume: uploadURL), .located(offset: 0)])
        let action = machine.handle(.failed(.status(409, code: "ERR_OFFSET_MISMATCH", retryAfter: nil, message: "")), elapsed: .zero, random: 0)
        #expect(action == .locate(uploadURL))
    }

    @Test func retryAfterIsHonoured() {
        var machine = UploadMachine(length: 100)
        _ = run(&machine, [.start(resume: uploadURL), .located(offset: 0)])
        let action = machine.handle(.failed(.status(503, code: nil, retryAfter: .seconds(20), message: "")), elapsed: .zero, random: 0)
        #expect(action == .wait(.seconds(20)))
    }

    @Test(arguments: [400, 403, 413, 415])
    func clientErrorsAreFatal(status: Int) {
        var machine = UploadMachine(length: 100)
        _ = run(&machine, [.start(resume: uploadURL), .located(offset: 0)])
        let action = machine.handle(.failed(.status(status, code: "ERR_X", retryAfter: nil, message: "no")), elapsed: .zero, random: 0)
        #expect(action == .fail(.rejected(status: status, code: "ERR_X", message: "no")))
    }

    @Test func aGoneUploadStartsOverOnce() {
        var machine = UploadMachine(length: 100)
        let gone = UploadMachine.Event.failed(.status(410, code: "ERR_UPLOAD_GONE", retryAfter: nil, message: ""))
        let actions = run(&machine, [.start(resume: uploadURL), gone, .discovered(ferryCapabilities), .created(uploadURL, offset: 0), gone])
        #expect(actions[1] == .startOver)
        #expect(actions.last == .fail(.uploadGone))
    }

    @Test func theDeadlineEndsRetries() {
        var machine = UploadMachine(length: 100, retry: RetryPolicy(deadline: .seconds(60)))
        _ = run(&machine, [.start(resume: uploadURL), .located(offset: 0)])
        let action = machine.handle(.failed(.stalled), elapsed: .seconds(61), random: 0.5)
        #expect(action == .fail(.deadlineExceeded(lastFailure: "stalled")))
    }

    @Test func aServerWithoutOptionsUsesCoreTus() {
        var machine = UploadMachine(length: 100)
        let actions = run(&machine, [.start(resume: nil), .failed(.status(405, code: nil, retryAfter: nil, message: ""))])
        #expect(actions == [.discover, .create(firstChunk: nil)])
    }

    @Test(arguments: [500, 503])
    func aBrokenOptionsFallsBackToCoreTus(status: Int) {
        var machine = UploadMachine(length: 100)
        let actions = run(&machine, [.start(resume: nil), .failed(.status(status, code: nil, retryAfter: nil, message: ""))])
        #expect(actions == [.discover, .create(firstChunk: nil)])
    }

    @Test func optionsThatNeverAnswersFallsBackAfterThreeTries() {
        var machine = UploadMachine(length: 100)
        _ = machine.handle(.start(resume: nil), elapsed: .zero, random: 0)
        #expect(machine.handle(.failed(.transport("closed")), elapsed: .zero, random: 0) != .create(firstChunk: nil))
        _ = machine.handle(.waited, elapsed: .zero, random: 0)
        _ = machine.handle(.failed(.transport("closed")), elapsed: .zero, random: 0)
        _ = machine.handle(.waited, elapsed: .zero, random: 0)
        #expect(machine.handle(.failed(.transport("closed")), elapsed: .zero, random: 0) == .create(firstChunk: nil))
    }

    @Test func redirectsAreFatal() {
        var machine = UploadMachine(length: 100)
        _ = run(&machine, [.start(resume: nil), .discovered(ferryCapabilities)])
        guard case .fail(.rejected(307, _, _)) = machine.handle(.failed(.status(307, code: nil, retryAfter: nil, message: "")), elapsed: .zero, random: 0) else {
            Issue.record("a redirect must end the upload")
            return
        }
    }

    @Test func aResumedUploadTheServerRefusesToDescribeStartsOver() {
        var machine = UploadMachine(length: 100)
        let actions = run(&machine, [.start(resume: uploadURL), .failed(.status(400, code: nil, retryAfter: nil, message: "bad"))])
        #expect(actions == [.locate(uploadURL), .startOver])
    }

    @Test func tusMaxSizeRefusesBeforeSending() {
        var machine = UploadMachine(length: 2000)
        let actions = run(&machine, [.start(resume: nil), .discovered(ServerCapabilities(extensions: ["creation"], maxSize: 1000))])
        #expect(actions.last == .fail(.rejected(status: 413, code: "ERR_MAX_SIZE_EXCEEDED", message: "the server accepts at most 1000 bytes (Tus-Max-Size)")))
    }

    @Test func anEmptyFileCompletesOnCreation() {
        var machine = UploadMachine(length: 0)
        let actions = run(&machine, [.start(resume: nil), .discovered(ferryCapabilities), .created(uploadURL, offset: 0)])
        #expect(actions == [.discover, .create(firstChunk: nil), .finish(uploadURL)])
    }
}

@Suite("Upload state machine: streams of unknown length")
struct StreamMachineTests {
    @Test func aStreamIsSentAsItArrivesAndDeclaresItsLength() {
        var machine = UploadMachine(length: nil, sizer: ChunkSizer(configuration: .fixed(1000)))
        #expect(run(&machine, [.start(resume: nil), .discovered(ferryCapabilities), .created(uploadURL, offset: 0)]).last == .awaitData)
        machine.updateAvailable(1500, finished: false)
        #expect(machine.handle(.dataArrived, elapsed: .zero, random: 0) == .send(uploadURL, 0..<1000))
        #expect(machine.handle(.sent(offset: 1000, duration: .seconds(1)), elapsed: .zero, random: 0) == .send(uploadURL, 1000..<1500))
        #expect(machine.handle(.sent(offset: 1500, duration: .seconds(1)), elapsed: .zero, random: 0) == .awaitData)
        machine.updateAvailable(1700, finished: true)
        #expect(machine.handle(.dataArrived, elapsed: .zero, random: 0) == .sendFinal(uploadURL, 1500..<1700, length: 1700))
        #expect(machine.handle(.sent(offset: 1700, duration: .seconds(1)), elapsed: .zero, random: 0) == .finish(uploadURL))
    }

    @Test func aStreamEndingAfterItsLastPatchDeclaresWithAnEmptyOne() {
        var machine = UploadMachine(length: nil, sizer: ChunkSizer(configuration: .fixed(1000)))
        _ = run(&machine, [.start(resume: nil), .discovered(ferryCapabilities), .created(uploadURL, offset: 0)])
        machine.updateAvailable(1000, finished: false)
        _ = machine.handle(.dataArrived, elapsed: .zero, random: 0)
        #expect(machine.handle(.sent(offset: 1000, duration: .seconds(1)), elapsed: .zero, random: 0) == .awaitData)
        machine.updateAvailable(1000, finished: true)
        #expect(machine.handle(.dataArrived, elapsed: .zero, random: 0) == .sendFinal(uploadURL, 1000..<1000, length: 1000))
        #expect(machine.handle(.sent(offset: 1000, duration: .seconds(1)), elapsed: .zero, random: 0) == .finish(uploadURL))
    }

    @Test func aLostAnswerToTheFinalPatchIsRepeatedHarmlessly() {
        var machine = UploadMachine(length: nil, sizer: ChunkSizer(configuration: .fixed(1000)))
        _ = run(&machine, [.start(resume: nil), .discovered(ferryCapabilities), .created(uploadURL, offset: 0)])
        machine.updateAvailable(500, finished: true)
        #expect(machine.handle(.dataArrived, elapsed: .zero, random: 0) == .sendFinal(uploadURL, 0..<500, length: 500))
        _ = machine.handle(.failed(.stalled), elapsed: .zero, random: 0)
        #expect(machine.handle(.waited, elapsed: .zero, random: 0) == .locate(uploadURL))
        // The server stored everything; the length must still be declared (idempotently).
        #expect(machine.handle(.located(offset: 500), elapsed: .zero, random: 0) == .sendFinal(uploadURL, 500..<500, length: 500))
    }
}

extension StreamMachineTests {
    @Test func aPlainPatchThatHappensToReachTheEndDoesNotCountAsDeclaring() {
        var machine = UploadMachine(length: nil, sizer: ChunkSizer(configuration: .fixed(1000)))
        _ = run(&machine, [.start(resume: nil), .discovered(ferryCapabilities), .created(uploadURL, offset: 0)])
        machine.updateAvailable(800, finished: false)
        #expect(machine.handle(.dataArrived, elapsed: .zero, random: 0) == .send(uploadURL, 0..<800))
        // The stream ends while that PATCH (without Upload-Length) is in flight.
        machine.updateAvailable(800, finished: true)
        #expect(machine.handle(.sent(offset: 800, duration: .seconds(1)), elapsed: .zero, random: 0) == .sendFinal(uploadURL, 800..<800, length: 800))
    }
}
