@testable import FerryClient
import HTTPTypes
import Testing

@Suite("Upload fields")
struct UploadFieldsTests {
    @Test(arguments: [
        ("0", Int64?.some(0)), ("123", 123), ("9223372036854775807", .max), ("9223372036854775808", nil),
        ("-5", nil), ("+5", nil), ("5 5", nil), ("5.0", nil), ("abc", nil), ("", nil),
    ])
    func offsetsAreNonNegativeDecimals(text: String, expected: Int64?) {
        #expect(UploadFields([.uploadOffset: text]).uploadOffset == expected)
        #expect(UploadFields([.uploadLength: text]).uploadLength == expected)
        #expect(UploadFields([.tusMaxSize: text]).tusMaxSize == expected)
    }

    @Test(arguments: [
        ("3", Duration?.some(.seconds(3))), ("0.5", .milliseconds(500)), ("-1", nil), ("inf", nil), ("Wed, 21 Oct 2015 07:28:00 GMT", nil),
    ])
    func retryAfterInSeconds(text: String, expected: Duration?) {
        #expect(UploadFields([.retryAfter: text]).retryAfter == expected)
    }

    @Test func absentFieldsAreNil() {
        let fields = UploadFields([:])
        #expect(fields.uploadOffset == nil && fields.uploadLength == nil && fields.retryAfter == nil && fields.location == nil)
        #expect(fields.tusExtensions.isEmpty && fields.tusChecksumAlgorithms.isEmpty)
    }

    @Test func listsAndParameters() {
        let fields = UploadFields([
            .tusExtension: "creation, checksum,,termination", .tusChecksumAlgorithm: "sha1,sha256",
            .uploadLimit: "min-size=0, max-size=1000", .ferryError: "ERR_X", .location: "/files/1",
        ])
        #expect(fields.tusExtensions == ["creation", "checksum", "termination"])
        #expect(fields.tusChecksumAlgorithms == ["sha1", "sha256"])
        #expect(fields.uploadLimitMaxSize == 1000)
        #expect(fields.ferryError == "ERR_X")
        #expect(fields.location == "/files/1")
    }

    @Test func headerLinesBecomeFields() throws {
        let fields = try UploadOptions.headerFields(parsing: ["Authorization: Bearer a:b", "X-Trace:1"])
        #expect(fields[.authorization] == "Bearer a:b")
        #expect(fields[HTTPField.Name("X-Trace")!] == "1")
        #expect(throws: UploadOptions.InvalidFieldLine.self) { try UploadOptions.headerFields(parsing: ["no colon"]) }
        #expect(throws: UploadOptions.InvalidFieldLine.self) { try UploadOptions.headerFields(parsing: ["bad name: x"]) }
    }
}
