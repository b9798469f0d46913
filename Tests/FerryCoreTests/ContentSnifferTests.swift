import FerryCore
import Testing

@Suite("Content sniffing: a file's first bytes against its declared type")
struct ContentSnifferTests {
    static func ascii(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test(arguments: [
        ([0xFF, 0xD8, 0xFF, 0xE0], "image/jpeg"),
        ([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "image/png"),
        (ascii("GIF89a"), "image/gif"),
        (ascii("RIFF") + [0, 0, 0, 0] + ascii("WEBP"), "image/webp"),
        (ascii("RIFF") + [0, 0, 0, 0] + ascii("WAVE"), "audio/wav"),
        ([0, 0, 0, 24] + ascii("ftypheic"), "image/heic"),
        ([0, 0, 0, 24] + ascii("ftypavif"), "image/avif"),
        ([0, 0, 0, 32] + ascii("ftypM4A "), "audio/mp4"),
        ([0, 0, 0, 32] + ascii("ftypisom"), "video/mp4"),
        ([0, 0, 0, 20] + ascii("ftypqt  "), "video/quicktime"),
        ([0, 0, 0, 20] + ascii("ftyp3gp4"), "video/3gpp"),
        (ascii("ID3") + [4, 0], "audio/mpeg"),
        ([0xFF, 0xFB, 0x90, 0x64], "audio/mpeg"),
        ([0xFF, 0xF1, 0x50, 0x80], "audio/aac"),
        (ascii("OggS") + [0], "audio/ogg"),
        (ascii("#!AMR\n"), "audio/amr"),
        (ascii("fLaC"), "audio/flac"),
        ([0x1A, 0x45, 0xDF, 0xA3], "video/webm"),
        (ascii("%PDF-1.7"), "application/pdf"),
    ] as [([UInt8], String)])
    func recognises(_ prefix: [UInt8], _ type: String) {
        #expect(ContentSniffer.types(of: prefix).contains(type))
        #expect(ContentSniffer.knownTypes.contains(type))
    }

    static let images = Scenario(name: "images", contentTypes: ["image/*", "text/plain"])

    @Test func checksTheDeclaredTypeAgainstTheBytes() throws {
        let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + Array(repeating: 0, count: 12)
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(repeating: 0, count: 8)
        try ContentSniffer.check(prefix: jpeg, declared: "image/jpeg", scenario: Self.images)
        try ContentSniffer.check(prefix: jpeg, declared: "IMAGE/JPEG; charset=x", scenario: Self.images)
        #expect(throws: FerryError.self) { try ContentSniffer.check(prefix: png, declared: "image/jpeg", scenario: Self.images) }
        // Undeclared: any allowed type passes, a known type outside the list does not.
        try ContentSniffer.check(prefix: png, declared: nil, scenario: Self.images)
        #expect(throws: FerryError.self) { try ContentSniffer.check(prefix: Self.ascii("%PDF-1.4 ........"), declared: nil, scenario: Self.images) }
        // A type without a signature passes only when listed exactly and the bytes are not a foreign known type.
        try ContentSniffer.check(prefix: Self.ascii("hello world, text"), declared: "text/plain", scenario: Self.images)
        #expect(throws: FerryError.self) {
            try ContentSniffer.check(prefix: Self.ascii("%PDF-1.4 ........"), declared: "text/plain", scenario: Self.images)
        }
        #expect(throws: FerryError.self) { try ContentSniffer.check(prefix: jpeg, declared: "image/x-unknown", scenario: Self.images) }
        // A scenario without content types checks nothing.
        try ContentSniffer.check(prefix: png, declared: "image/jpeg", scenario: Scenario(name: "any"))
    }
}
