import FerryCore
import Foundation

/// What every catalog must do for instant upload (docs/instant-upload.md): keep an upload's
/// content scope, announced digest and pending challenge, and find complete uploads by
/// (scope, SHA-256, length) — never an incomplete or gone one, nor one of another scope.
enum ContentIndexConformance {
    static let checks: [ConformanceCheck<any FullCatalog>] = [
        ConformanceCheck("roundTripsInstantFields") { try await roundTripsInstantFields($0) },
        ConformanceCheck("findsCompleteContentInItsScope") { try await findsCompleteContentInItsScope($0) },
    ]

    static let epoch = UploadCatalogConformance.epoch
    static let digest = String(repeating: "5e", count: 32)

    static func upload(scope: String?, sha256: String? = digest, length: Int64 = 100, state: UploadState = .complete, at seconds: Double) -> UploadRecord {
        UploadRecord(
            id: .random(), length: length, offset: state == .complete ? length : 0, state: state, createdAt: epoch.addingTimeInterval(seconds),
            scenario: "voice", sha256: sha256, contentScope: scope
        )
    }

    static func roundTripsInstantFields(_ catalog: any FullCatalog) async throws {
        var record = upload(scope: "o/voice/alice", sha256: nil, state: .incomplete, at: 0)
        record.announcedSHA256 = digest
        record.instantChallenge = "\(UploadID.random().rawValue) nonce=:AAAA:, ranges=\"0-9\", expires=1800000100"
        try await catalog.insert(record)
        try require(try await catalog.get(record.id) == record, "the scope, the announced digest and the challenge read back")
        // The challenge is used once: answering clears it.
        record.instantChallenge = nil
        record.offset = 100
        record.state = .complete
        record.sha256 = digest
        try await catalog.update(record, events: [], fence: nil)
        try require(try await catalog.get(record.id) == record, "a cleared challenge reads back as none")
    }

    static func findsCompleteContentInItsScope(_ catalog: any FullCatalog) async throws {
        func holders(_ scope: String = "s/voice", sha256: String = digest, length: Int64 = 100, limit: Int = 10) async throws -> [UploadID] {
            try await catalog.holders(scope: scope, sha256: sha256, length: length, limit: limit).map(\.id)
        }
        let second = upload(scope: "s/voice", at: 20)
        let first = upload(scope: "s/voice", at: 10)
        let others = [
            upload(scope: "s/voice", state: .incomplete, at: 1),  // not complete yet
            upload(scope: "s/voice", state: .terminated, at: 2),  // gone
            upload(scope: "s/video", at: 3),  // another scope
            upload(scope: nil, at: 4),  // takes no part
            upload(scope: "s/voice", length: 101, at: 5),  // another length
            upload(scope: "s/voice", sha256: String(repeating: "5f", count: 32), at: 6),  // other content
        ]
        for record in [second, first] + others { try await catalog.insert(record) }
        try require(try await holders() == [first.id, second.id], "the complete uploads of the scope, oldest first")
        try require(try await holders(limit: 1) == [first.id], "at most the limit")
        try require(try await holders("s/video") == [others[2].id], "each scope finds its own")
        try require(try await holders(length: 101) == [others[4].id], "the length is exact")
        try require(try await holders(sha256: digest.uppercased()) == [], "the digest is exact")
        try require(try await holders("*") == [], "no upload is in a scope it was not created in")

        // An upload that completes enters the index; one that is terminated leaves it.
        var completing = others[0]
        completing.offset = 100
        completing.state = .complete
        try await catalog.update(completing, events: [], fence: nil)
        try require(try await holders() == [completing.id, first.id, second.id], "a completed upload is found")
        var terminated = first
        terminated.state = .terminated
        try await catalog.update(terminated, events: [], fence: nil)
        try require(try await holders() == [completing.id, second.id], "a terminated upload is not")
        try await catalog.remove(second.id)
        try require(try await holders() == [completing.id], "nor a removed one")
    }
}
