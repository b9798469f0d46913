import FerryCore
import HTTPTypes

extension HTTPField.Name {
    static let tusResumable = Self("Tus-Resumable")!
    static let tusVersion = Self("Tus-Version")!
    static let tusExtension = Self("Tus-Extension")!
    static let tusMaxSize = Self("Tus-Max-Size")!
    static let tusChecksumAlgorithm = Self("Tus-Checksum-Algorithm")!
    static let uploadOffset = Self("Upload-Offset")!
    static let uploadLength = Self("Upload-Length")!
    static let uploadDeferLength = Self("Upload-Defer-Length")!
    static let uploadMetadata = Self("Upload-Metadata")!
    static let uploadConcat = Self("Upload-Concat")!
    static let uploadChecksum = Self("Upload-Checksum")!
    static let uploadExpires = Self("Upload-Expires")!
    static let methodOverride = Self("X-HTTP-Method-Override")!
    static let trailer = Self("Trailer")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let xForwardedProto = Self("X-Forwarded-Proto")!
    static let xForwardedHost = Self("X-Forwarded-Host")!
    static let xForwardedFor = Self("X-Forwarded-For")!
    /// `done`, `pending` or `failed`: where the `pre-finish` business result of a complete upload stands.
    public static let ferryBusinessStatus = Self("Ferry-Business-Status")!
    /// The `pre-finish` callback's answer, compact JSON.
    public static let ferryBusinessResult = Self("Ferry-Business-Result")!
    /// The stable `ERR_*` code of an error response.
    public static let ferryError = Self("Ferry-Error")!
    /// The network a client says it is on (`wifi`, `5g`, `4g`, `3g`, `2g`, `wired`, `unknown`), for the statistics.
    public static let ferryNetwork = Self("Ferry-Network")!
    /// The kind of client, when it names itself (the web console sends `console`).
    public static let ferryClient = Self("Ferry-Client")!
}

/// The tus request headers Ferry reads, parsed once into typed values.
struct TusHeaders {
    let fields: HTTPFields

    /// A header that must be a plain non-negative decimal (no sign, no spaces, fits Int64).
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

    var contentType: String? {
        fields[.contentType].map { $0.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? "" }
    }

    var isOffsetStream: Bool { contentType == "application/offset+octet-stream" }

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
