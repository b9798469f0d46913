import FerryCore
import FerryProtocol
import HTTPTypes

extension HTTPField.Name {
    static let tusVersion = Self("Tus-Version")!
    static let tusExtension = Self("Tus-Extension")!
    static let tusMaxSize = Self("Tus-Max-Size")!
    static let tusChecksumAlgorithm = Self("Tus-Checksum-Algorithm")!
    static let uploadDeferLength = Self("Upload-Defer-Length")!
    static let uploadMetadata = Self("Upload-Metadata")!
    static let uploadConcat = Self("Upload-Concat")!
    static let uploadChecksum = Self("Upload-Checksum")!
    static let uploadExpires = Self("Upload-Expires")!
    static let methodOverride = Self("X-HTTP-Method-Override")!
    static let trailer = Self("Trailer")!
}

/// Typed accessors for the tus request fields; `TusDialect.parse` reads each one once.
struct TusFields {
    let fields: HTTPFields

    /// A field that must be a plain non-negative decimal (no sign, no spaces, fits Int64).
    func decimal(_ name: HTTPField.Name, _ code: FerryError.Code) throws(FerryError) -> Int64? {
        guard let text = fields[name] else { return nil }
        guard !text.isEmpty, text.utf8.count <= 19, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let value = Int64(text)
        else {
            throw FerryError(code, "\(name) must be a non-negative decimal number")
        }
        return value
    }

    var contentLength: Int64? { fields[.contentLength].flatMap { Int64($0) } }

    /// The media type of `Content-Type`, lowercased, without parameters.
    var isOffsetStream: Bool { fields.mediaType == "application/offset+octet-stream" }

    /// Whether the request has a body at all.
    var hasBody: Bool {
        if let length = contentLength { return length > 0 }
        return fields[.transferEncoding] != nil
    }

    var checksum: ChecksumExpectation? {
        get throws(FerryError) {
            guard let value = fields[.uploadChecksum] else { return nil }
            return try ChecksumExpectation(header: value)
        }
    }

    /// `Trailer: Upload-Checksum` announces the checksum as a trailer.
    var announcesChecksumTrailer: Bool {
        fields[values: .trailer].contains { value in
            value.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == "upload-checksum" }
        }
    }

    var metadata: UploadMetadata {
        get throws(FerryError) {
            guard let value = fields[.uploadMetadata] else { return UploadMetadata() }
            return try UploadMetadata(tusHeader: value)
        }
    }
}
