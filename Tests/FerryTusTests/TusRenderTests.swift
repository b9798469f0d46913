import FerryCore
import FerryProtocol
import FerryTus
import Foundation
import HTTPTypes
import Testing

/// `TusDialect.render` alone: an outcome in, the exact answer out.
@Suite("tus: render")
struct TusRenderTests {
    let dialect = TusDialect(routes: UploadRoutes(), capabilities: capabilities)
    let context = TusDialect.Context(method: .patch, collectionURL: "https://up.example/files/")
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func record(offset: Int64, length: Int64?, state: UploadState = .incomplete) -> UploadRecord {
        var record = UploadRecord(id: UploadID("0123456789abcdef0123456789abcdef")!, length: length, offset: offset, state: state, createdAt: now)
        if state == .incomplete { record.expiresAt = now.addingTimeInterval(60) }
        return record
    }

    @Test func anAppendNamesTheOffsetAndTheExpiry() {
        let answer = dialect.render(UploadOutcome(.appended(record(offset: 5, length: 10)), at: now), context)
        #expect(answer.status == .noContent)
        #expect(answer.headers[HTTPField.Name("Upload-Offset")!] == "5")
        #expect(answer.headers[HTTPField.Name("Upload-Expires")!] == "Fri, 15 Jan 2027 08:01:00 GMT")
        #expect(answer.headers[HTTPField.Name("Tus-Resumable")!] == "1.0.0")
    }

    @Test func aCreationWhoseBodyFailedStillNamesItsUpload() {
        let failure = UploadOutcome.Failure(created: record(offset: 3, length: 10))
        let answer = dialect.render(UploadOutcome(.failed(FerryError(.checksumMismatch, "no"), failure), at: now), context)
        #expect(answer.status.code == 460)
        #expect(answer.headers[.location] == "https://up.example/files/0123456789abcdef0123456789abcdef")
        #expect(answer.headers[.ferryError] == "ERR_CHECKSUM_MISMATCH")
        #expect(answer.text == "ERR_CHECKSUM_MISMATCH: no\n")
    }

    @Test func errorsToHeadHaveNoBody() {
        let head = TusDialect.Context(method: .head, collectionURL: "http://x/files/")
        let answer = dialect.render(UploadOutcome.failed(FerryError(.uploadGone, "gone"), at: now), head)
        #expect(answer.status == .gone && answer.body == .empty)
    }

    @Test func aVersionMismatchNamesTheVersion() {
        let answer = dialect.render(UploadOutcome.failed(FerryError(.unsupportedVersion, "1.0.0 only"), at: now), context)
        #expect(answer.status == .preconditionFailed && answer.headers[HTTPField.Name("Tus-Version")!] == "1.0.0")
    }

    @Test func optionsAdvertiseWhatTheSeamsCanDo() {
        let answer = dialect.render(UploadOutcome(.options(scenario: nil), at: now), context)
        #expect(answer.headers[HTTPField.Name("Tus-Extension")!]
            == "creation,creation-with-upload,creation-defer-length,expiration,checksum,checksum-trailer,termination,concatenation,concatenation-unfinished")
        #expect(answer.headers[HTTPField.Name("Tus-Max-Size")!] == "1000")
        #expect(answer.headers[.uploadLimit] == "max-size=1000, min-size=0, max-age=60")
        let plain = TusDialect(routes: UploadRoutes(), capabilities: EngineCapabilities(concatenation: false, content: false, expiration: false, termination: false))
        #expect(plain.render(UploadOutcome(.options(scenario: nil), at: now), context).headers[HTTPField.Name("Tus-Extension")!]
            == "creation,creation-with-upload,creation-defer-length,checksum,checksum-trailer")
    }

    @Test func optionsSayWhenConcatenationCopiesBytes() {
        let field = HTTPField.Name("Ferry-Concatenation")!
        #expect(dialect.render(UploadOutcome(.options(scenario: nil), at: now), context).headers[field] == nil, "a store that links says nothing")
        var copying = capabilities
        copying.concatenationCopies = true
        let s3 = TusDialect(routes: UploadRoutes(), capabilities: copying)
        #expect(s3.render(UploadOutcome(.options(scenario: nil), at: now), context).headers[field] == "copy")
    }
}
