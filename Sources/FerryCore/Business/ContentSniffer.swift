/// Recognises a file's type from its first bytes (magic numbers), so that a scenario that
/// accepts images does not store a `.jpg` that is not a JPEG.
public enum ContentSniffer {
    /// Bytes a decision needs: the request at offset 0 must carry this many (or the whole file).
    public static let prefixLength = 16

    /// The media types the first bytes belong to; empty when no known signature matches.
    public static func types(of prefix: [UInt8]) -> Set<String> {
        func at(_ offset: Int, _ bytes: [UInt8]) -> Bool {
            prefix.count >= offset + bytes.count && Array(prefix[offset..<offset + bytes.count]) == bytes
        }
        func ascii(_ text: String) -> [UInt8] { Array(text.utf8) }
        var found = Set<String>()
        if at(0, [0xFF, 0xD8, 0xFF]) { found.insert("image/jpeg") }
        if at(0, [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { found.insert("image/png") }
        if at(0, ascii("GIF87a")) || at(0, ascii("GIF89a")) { found.insert("image/gif") }
        if at(0, ascii("RIFF")), at(8, ascii("WEBP")) { found.insert("image/webp") }
        if at(0, ascii("RIFF")), at(8, ascii("WAVE")) { found.formUnion(["audio/wav", "audio/x-wav", "audio/wave"]) }
        if at(4, ascii("ftyp")), prefix.count >= 12 {
            let brand = String(decoding: prefix[8..<12], as: UTF8.self)
            switch brand {
            case "heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1":
                found.formUnion(["image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence"])
            case "avif", "avis":
                found.insert("image/avif")
            case "M4A ", "M4B ", "M4P ":
                found.formUnion(["audio/mp4", "audio/x-m4a", "audio/m4a", "audio/aac"])
            case "qt  ":
                found.insert("video/quicktime")
            case _ where brand.hasPrefix("3g"):
                found.formUnion(["video/3gpp", "audio/3gpp", "video/3gpp2", "audio/3gpp2"])
            default:
                found.formUnion(["video/mp4", "audio/mp4", "video/quicktime", "audio/x-m4a", "audio/m4a"])
            }
        }
        if at(0, ascii("ID3")) || (prefix.count >= 2 && prefix[0] == 0xFF && prefix[1] & 0xE6 == 0xE2) {
            found.formUnion(["audio/mpeg", "audio/mp3"])
        }
        if prefix.count >= 2, prefix[0] == 0xFF, prefix[1] & 0xF6 == 0xF0 { found.formUnion(["audio/aac", "audio/aacp"]) }
        if at(0, ascii("OggS")) { found.formUnion(["audio/ogg", "audio/opus", "video/ogg", "application/ogg"]) }
        if at(0, ascii("#!AMR")) { found.formUnion(["audio/amr", "audio/amr-wb"]) }
        if at(0, ascii("fLaC")) { found.formUnion(["audio/flac", "audio/x-flac"]) }
        if at(0, [0x1A, 0x45, 0xDF, 0xA3]) { found.formUnion(["video/webm", "audio/webm", "video/x-matroska"]) }
        if at(0, ascii("%PDF-")) { found.insert("application/pdf") }
        return found
    }

    /// Every type `types(of:)` can recognise, so that a declared type Ferry has no signature
    /// for is told apart from a declared type whose signature did not match.
    public static let knownTypes: Set<String> = [
        "image/jpeg", "image/png", "image/gif", "image/webp", "image/heic", "image/heif", "image/heic-sequence",
        "image/heif-sequence", "image/avif", "audio/wav", "audio/x-wav", "audio/wave", "audio/mp4", "audio/x-m4a",
        "audio/m4a", "audio/aac", "audio/aacp", "video/quicktime", "video/3gpp", "audio/3gpp", "video/3gpp2", "audio/3gpp2",
        "video/mp4", "audio/mpeg", "audio/mp3", "audio/ogg", "audio/opus", "video/ogg", "application/ogg", "audio/amr",
        "audio/amr-wb", "audio/flac", "audio/x-flac", "video/webm", "audio/webm", "video/x-matroska", "application/pdf",
    ]

    /// Checks the first bytes of an upload of `scenario` that declared `declared` (`filetype`).
    /// Passes when the scenario allows any type.
    public static func check(prefix: [UInt8], declared: String?, scenario: Scenario) throws(FerryError) {
        guard !scenario.contentTypes.isEmpty else { return }
        let found = types(of: prefix)
        if let declared {
            let bare = Scenario.bareType(declared)
            if knownTypes.contains(bare) {
                guard found.contains(bare) else {
                    throw FerryError(.contentMismatch, "the file's first bytes are not those of \(bare)")
                }
            } else {
                // No signature known: the operator must have listed the type itself, and the
                // bytes must not be a known type of something else.
                guard scenario.listsExactly(bare), found.allSatisfy({ scenario.allows(contentType: $0) }) else {
                    throw FerryError(.contentMismatch, "the file's first bytes do not match \(bare)")
                }
            }
        } else {
            guard found.contains(where: { scenario.allows(contentType: $0) }) else {
                throw FerryError(.contentMismatch, "the file's first bytes are not of a type this scenario accepts")
            }
        }
    }
}
