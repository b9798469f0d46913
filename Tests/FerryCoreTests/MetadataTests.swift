import FerryCore
import Testing

@Suite("Upload-Metadata and checksums")
struct MetadataTests {
    @Test(arguments: [
        ("filename aGVsbG8udHh0", "filename aGVsbG8udHh0"),
        ("a aGk=,flag,empty ", "a aGk=,flag,empty"),
        ("", ""),
        ("  k dg==  ", "k dg=="),
    ])
    func parsesValid(input: String, canonical: String) throws {
        #expect(try UploadMetadata(tusHeader: input).tusHeader == canonical)
    }

    @Test(arguments: [
        "key not-base64!",
        "a aGk=,a aGk=",
        ",a aGk=",
        "a aGk= extra",
        "k dg",
    ])
    func rejectsMalformed(input: String) {
        #expect(throws: FerryError.self) { try UploadMetadata(tusHeader: input) }
    }

    @Test func decodesValues() throws {
        let metadata = try UploadMetadata(tusHeader: "filename aGVsbG8udHh0,filetype aW1hZ2UvcG5n")
        #expect(metadata.string("filename") == "hello.txt")
        #expect(metadata.string("filetype") == "image/png")
        #expect(metadata.string("missing") == nil)
    }

    @Test func checksumHeaders() throws {
        let expectation = try ChecksumExpectation(header: "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=")
        #expect(expectation.algorithm == .sha1)
        #expect(expectation.digest.count == 20)
        #expect(throws: FerryError.self) { try ChecksumExpectation(header: "crc32 AAAA") }
        #expect(throws: FerryError.self) { try ChecksumExpectation(header: "sha1") }
        #expect(throws: FerryError.self) { try ChecksumExpectation(header: "sha1 %%%") }
    }

    @Test func uploadIDs() {
        let id = UploadID.random()
        #expect(id.rawValue.count == 32)
        #expect(UploadID(id.rawValue) == id)
        #expect(UploadID("../etc/passwd") == nil)
        #expect(UploadID("ABCDEF0123456789") == nil)
        #expect(UploadID.random() != UploadID.random())
    }
}
