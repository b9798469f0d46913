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

@Suite("Upload state machine: which requests carry a checksum")
struct ChecksumDecisionTests {
    static let sha256Server = ServerCapabilities(extensions: ["creation", "checksum"], checksumAlgorithms: ["sha1", "md5", "sha256", "sha512"])
    static let mib: Int64 = 1 << 20

    struct Case: Sendable, CustomTestStringConvertible {
        var testDescription: String
        var policy = ChecksumPolicy()
        var server = ChecksumDecisionTests.sha256Server
        var bytes: Int64
        var streak = 0
        var expected: RequestChecksum?
    }

    static let decisions: [Case] = [
        Case(testDescription: "a small body on a fresh link", bytes: 100_000, expected: .sha256),
        Case(testDescription: "an empty body (a stream declaring its length)", bytes: 0, expected: .sha256),
        Case(testDescription: "1 MiB: the risk-free limit", bytes: mib, expected: .sha256),
        Case(testDescription: "past the risk-free limit on an unproven link", bytes: mib + 1, expected: nil),
        Case(testDescription: "4 MiB after 7 successes", bytes: 4 * mib, streak: 7, expected: nil),
        Case(testDescription: "4 MiB after 8 successes", bytes: 4 * mib, streak: 8, expected: .sha256),
        Case(testDescription: "8 MiB: the limit", bytes: 8 * mib, streak: 100, expected: .sha256),
        Case(testDescription: "past the limit", bytes: 8 * mib + 1, streak: 100, expected: nil),
        Case(testDescription: "a limit below the risk-free one", policy: ChecksumPolicy(limit: 512 << 10), bytes: mib, streak: 100, expected: nil),
        Case(testDescription: "checksums turned off", policy: ChecksumPolicy(enabled: false), bytes: 1000, expected: nil),
        Case(testDescription: "no checksum extension", server: ServerCapabilities(extensions: ["creation"], checksumAlgorithms: ["sha256"]), bytes: 1000, expected: nil),
        Case(testDescription: "the extension without algorithms", server: ferryCapabilities, bytes: 1000, expected: nil),
        Case(testDescription: "only algorithms the client does not compute", server: ServerCapabilities(extensions: ["checksum"], checksumAlgorithms: ["sha1", "md5"]), bytes: 1000, expected: nil),
        Case(testDescription: "algorithm names in capitals", server: ServerCapabilities(extensions: ["checksum"], checksumAlgorithms: ["SHA256"]), bytes: 1000, expected: .sha256),
    ]

    @Test(arguments: decisions)
    func policy(_ decision: Case) {
        #expect(decision.policy.checksum(forBody: decision.bytes, server: decision.server, successStreak: decision.streak) == decision.expected)
    }

    /// A machine past creation (4 MiB requests of a 100 MiB upload) after `events`.
    struct Run: Sendable, CustomTestStringConvertible {
        var testDescription: String
        var events: [UploadMachine.Event]
        var expected: UploadMachine.Action
    }

    static func sent(_ count: Int) -> [UploadMachine.Event] {
        (1...count).map { .sent(offset: Int64($0) * 4 * mib, duration: .seconds(1)) }
    }

    static let runs: [Run] = [
        Run(testDescription: "the first 4 MiB request goes without", events: [], expected: .send(uploadURL, 0..<(4 * mib), checksum: nil)),
        Run(testDescription: "after 7 successes still without", events: sent(7), expected: .send(uploadURL, (28 * mib)..<(32 * mib), checksum: nil)),
        Run(testDescription: "after 8 successes with", events: sent(8), expected: .send(uploadURL, (32 * mib)..<(36 * mib), checksum: .sha256)),
        Run(
            testDescription: "a failed request with a body starts the count again",
            events: sent(8) + [.failed(.transport("reset")), .waited, .located(offset: 32 * mib)],
            expected: .send(uploadURL, (32 * mib)..<(36 * mib), checksum: nil)
        ),
        Run(
            testDescription: "a failed HEAD does not",
            events: sent(8) + [.networkChanged(.wifi), .waited, .failed(.transport("reset")), .waited, .located(offset: 32 * mib)],
            expected: .send(uploadURL, (32 * mib)..<(36 * mib), checksum: .sha256)
        ),
    ]

    @Test(arguments: runs)
    func machine(_ run: Run) {
        var machine = UploadMachine(length: 100 * Self.mib, sizer: ChunkSizer(configuration: .fixed(4 * Self.mib)))
        _ = FerryClientTests.run(&machine, [.start(resume: nil), .discovered(Self.sha256Server), .created(uploadURL, offset: 0)])
        var action = machine.handle(.dataArrived, elapsed: .zero, random: 0.5)
        for event in run.events { action = machine.handle(event, elapsed: .zero, random: 0.5) }
        #expect(action == run.expected)
    }

    @Test(arguments: [(Int64(100_000), RequestChecksum?.some(.sha256)), (4 * mib, nil)])
    func creationWithUpload(length: Int64, expected: RequestChecksum?) {
        var machine = UploadMachine(length: length, sizer: ChunkSizer(configuration: .fixed(4 * Self.mib)))
        let server = ServerCapabilities(extensions: ["creation-with-upload", "checksum"], checksumAlgorithms: ["sha256"])
        let actions = FerryClientTests.run(&machine, [.start(resume: nil), .discovered(server)])
        #expect(actions.last == .create(firstChunk: 0..<length, checksum: expected))
    }
}
