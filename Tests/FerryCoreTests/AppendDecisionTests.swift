@testable import FerryCore
import Testing

/// The append decisions as tables: values in, the decision out.
@Suite("Append decisions")
struct AppendDecisionTests {
    static let sha1 = ChecksumExpectation(algorithm: .sha1, digest: [1, 2, 3])

    struct VerdictRow: Sendable, CustomTestStringConvertible {
        var name: String
        var request: AppendRequest
        var knownLength = true
        var exceeded = false
        var receiverFailure: FerryError.Code?
        var end: BodyEnd
        var matches = true
        var keep: Bool
        var failure: FerryError.Code?
        var testDescription: String { name }
    }

    static let verdicts: [VerdictRow] = [
        .init(name: "a whole body is kept", request: AppendRequest(offset: 0), end: BodyEnd(complete: true), keep: true),
        .init(name: "a broken body keeps what it stored", request: AppendRequest(offset: 0), end: BodyEnd(complete: false), keep: true),
        .init(name: "a storage failure keeps what was stored before it", request: AppendRequest(offset: 0), receiverFailure: .storageFailure,
              end: BodyEnd(complete: false), keep: true, failure: .storageFailure),
        .init(name: "past a known length", request: AppendRequest(offset: 0), exceeded: true, end: BodyEnd(complete: false),
              keep: false, failure: .lengthExceeded),
        .init(name: "past the size limit of a deferred length", request: AppendRequest(offset: 0), knownLength: false, exceeded: true,
              end: BodyEnd(complete: false), keep: false, failure: .maxSizeExceeded),
        .init(name: "a matching checksum", request: AppendRequest(offset: 0, checksum: sha1), end: BodyEnd(complete: true), keep: true),
        .init(name: "a mismatching checksum", request: AppendRequest(offset: 0, checksum: sha1), end: BodyEnd(complete: true), matches: false,
              keep: false, failure: .checksumMismatch),
        .init(name: "a checksummed body cut short", request: AppendRequest(offset: 0, checksum: sha1), end: BodyEnd(complete: false),
              keep: false),
        .init(name: "a trailer that never came", request: AppendRequest(offset: 0, expectsTrailerChecksum: true), end: BodyEnd(complete: true),
              keep: false, failure: .invalidChecksum),
        .init(name: "a trailer with an unknown algorithm", request: AppendRequest(offset: 0, expectsTrailerChecksum: true),
              end: BodyEnd(complete: true, trailerChecksum: "crc32 AAAA"), keep: false, failure: .unsupportedChecksumAlgorithm),
        .init(name: "a matching trailer", request: AppendRequest(offset: 0, expectsTrailerChecksum: true),
              end: BodyEnd(complete: true, trailerChecksum: "sha1 AQID"), keep: true),
    ]

    @Test(arguments: verdicts)
    func verdict(_ row: VerdictRow) {
        let verdict = AppendDecision.verdict(
            row.request, knownLength: row.knownLength, exceeded: row.exceeded,
            receiverFailure: row.receiverFailure.map { FerryError($0, "receiver") }, end: row.end, matches: { _ in row.matches }
        )
        #expect(verdict.keep == row.keep)
        #expect(verdict.failure?.code == row.failure)
    }

    struct CompletionRow: Sendable, CustomTestStringConvertible {
        var name: String
        var request: AppendRequest
        var end: BodyEnd
        var failed = false
        var length: Int64?
        var durable: Int64
        var completion: AppendDecision.Completion
        var testDescription: String { name }
    }

    static let tusAppend = AppendRequest(offset: 0)
    static let rufhOpen = AppendRequest(offset: 0, completesUpload: false, completesAtLength: false)
    static let rufhComplete = AppendRequest(offset: 0, completesUpload: true, completesAtLength: false)

    static let completions: [CompletionRow] = [
        .init(name: "tus: reaching the length completes", request: tusAppend, end: BodyEnd(complete: true), length: 5, durable: 5,
              completion: .complete(length: 5)),
        .init(name: "tus: even a body cut at the length", request: tusAppend, end: BodyEnd(complete: false), length: 5, durable: 5,
              completion: .complete(length: 5)),
        .init(name: "tus: short of the length", request: tusAppend, end: BodyEnd(complete: true), length: 5, durable: 4, completion: .open),
        .init(name: "tus: a deferred length", request: tusAppend, end: BodyEnd(complete: true), length: nil, durable: 4, completion: .open),
        .init(name: "RUFH ?0 at the length stays open", request: rufhOpen, end: BodyEnd(complete: true), length: 5, durable: 5, completion: .open),
        .init(name: "RUFH ?1 fixes an unknown length", request: rufhComplete, end: BodyEnd(complete: true), length: nil, durable: 7,
              completion: .complete(length: 7)),
        .init(name: "RUFH ?1 at the length", request: rufhComplete, end: BodyEnd(complete: true), length: 7, durable: 7,
              completion: .complete(length: 7)),
        .init(name: "RUFH ?1 short of the length", request: rufhComplete, end: BodyEnd(complete: true), length: 7, durable: 6,
              completion: .inconsistent(length: 7, stored: 6)),
        .init(name: "RUFH ?1 cut short", request: rufhComplete, end: BodyEnd(complete: false), length: 7, durable: 6, completion: .open),
        .init(name: "RUFH ?1 that failed", request: rufhComplete, end: BodyEnd(complete: true), failed: true, length: nil, durable: 6,
              completion: .open),
    ]

    @Test(arguments: completions)
    func completion(_ row: CompletionRow) {
        #expect(AppendDecision.completion(row.request, end: row.end, failed: row.failed, length: row.length, durable: row.durable) == row.completion)
    }

    @Test(arguments: [
        (nil, nil, true, "ok", nil),
        (FerryError.Code.checksumMismatch, nil, true, "ERR_CHECKSUM_MISMATCH", FerryError.Code.checksumMismatch),
        (nil, StopReason.superseded, false, "interrupted", FerryError.Code.requestSuperseded),
        (nil, StopReason.shutdown, false, "interrupted", FerryError.Code.shuttingDown),
        (nil, nil, false, "interrupted", FerryError.Code.requestIncomplete),
        (nil, StopReason.superseded, true, "ok", nil),
    ] as [(FerryError.Code?, StopReason?, Bool, String, FerryError.Code?)])
    func ending(_ failure: FerryError.Code?, _ stop: StopReason?, _ complete: Bool, _ outcome: String, _ error: FerryError.Code?) {
        let ending = AppendDecision.ending(failure: failure.map { FerryError($0, "x") }, stop: stop, bodyComplete: complete, stored: 3)
        #expect(ending.outcome == outcome)
        #expect(ending.error?.code == error)
    }
}
