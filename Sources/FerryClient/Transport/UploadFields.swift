import Foundation
import HTTPTypes

// The fields the client reads or writes. Internal on purpose: FerryProtocol, FerryTus and
// FerryRUFH declare public constants of the same names, and a module importing both (the `ferry`
// executable, the server tests) would find every use ambiguous. Callers outside FerryClient
// read answers through `UploadFields`.
extension HTTPField.Name {
    static let uploadOffset = Self("Upload-Offset")!
    static let uploadLength = Self("Upload-Length")!
    static let uploadDeferLength = Self("Upload-Defer-Length")!
    static let uploadMetadata = Self("Upload-Metadata")!
    static let uploadConcat = Self("Upload-Concat")!
    static let uploadChecksum = Self("Upload-Checksum")!
    static let uploadExpires = Self("Upload-Expires")!
    static let tusResumable = Self("Tus-Resumable")!
    static let tusExtension = Self("Tus-Extension")!
    static let tusMaxSize = Self("Tus-Max-Size")!
    static let tusChecksumAlgorithm = Self("Tus-Checksum-Algorithm")!
    /// RUFH: `?1` when the request's body ends the upload.
    static let uploadComplete = Self("Upload-Complete")!
    /// RUFH: the draft's interop version the request speaks.
    static let uploadDraftInteropVersion = Self("Upload-Draft-Interop-Version")!
    /// RUFH: the server's limits (`max-size=…, …`).
    static let uploadLimit = Self("Upload-Limit")!
    /// RFC 9530 digest of the request body (RUFH's checksum).
    static let contentDigest = Self("Content-Digest")!
    static let ferryError = Self("Ferry-Error")!
    static let ferryNetwork = Self("Ferry-Network")!
    static let ferryTelemetry = Self("Ferry-Telemetry")!
    static let ferryConcatenation = Self("Ferry-Concatenation")!
    static let ferryBusinessStatus = Self("Ferry-Business-Status")!
    static let ferryBusinessResult = Self("Ferry-Business-Result")!
    /// Instant upload (OPTIONS): `sha-256` when announcing a digest may spare the bytes.
    static let ferryInstantUpload = Self("Ferry-Instant-Upload")!
    /// Instant upload: the challenge on a creation whose content the server holds.
    static let ferryChallenge = Self("Ferry-Challenge")!
    /// Instant upload: the answer, on a PATCH with no body.
    static let ferryProof = Self("Ferry-Proof")!
    /// RFC 9530 digest of the whole file, announced at creation.
    static let reprDigest = Self("Repr-Digest")!
}

/// The fields of a server's answer, with typed accessors for those an upload reads: numbers are
/// parsed once, here, and nothing deeper in the client looks a field up by its name.
public struct UploadFields: Sendable, Equatable {
    /// Every field, as received.
    public let headerFields: HTTPFields
    /// `Upload-Offset`: the bytes the server stored; nil when absent or not a non-negative integer.
    public let uploadOffset: Int64?
    /// `Upload-Length`: the upload's declared length; nil when absent (deferred) or malformed.
    public let uploadLength: Int64?
    /// `Tus-Max-Size` (tus `OPTIONS`): the largest upload the server accepts.
    public let tusMaxSize: Int64?
    /// `Retry-After` in seconds (the delay form; an HTTP date is ignored).
    public let retryAfter: Duration?
    /// The `max-size` of RUFH's `Upload-Limit`.
    public let uploadLimitMaxSize: Int64?

    public init(_ headerFields: HTTPFields) {
        self.headerFields = headerFields
        uploadOffset = Self.count(headerFields[.uploadOffset])
        uploadLength = Self.count(headerFields[.uploadLength])
        tusMaxSize = Self.count(headerFields[.tusMaxSize])
        retryAfter = headerFields[.retryAfter].flatMap { Double($0) }.flatMap { $0.isFinite && $0 >= 0 ? .seconds($0) : nil }
        uploadLimitMaxSize = Self.parameter("max-size", of: headerFields[.uploadLimit]).flatMap(Self.count)
    }

    /// `Location`: where a creation put the upload (possibly relative to the request URL).
    public var location: String? { headerFields[.location] }
    /// `Ferry-Instant-Upload: sha-256` (OPTIONS): the server may complete an announced upload without its bytes.
    public var instantUpload: Bool { headerFields[.ferryInstantUpload]?.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == "sha-256" } ?? false }
    /// `Ferry-Challenge`: the instant-upload challenge of a creation.
    public var ferryChallenge: String? { headerFields[.ferryChallenge] }
    /// `Ferry-Error`: the stable `ERR_*` code of an error answer.
    public var ferryError: String? { headerFields[.ferryError] }
    /// `Ferry-Telemetry` (on `OPTIONS`): the path under which the server takes telemetry reports.
    public var ferryTelemetry: String? { headerFields[.ferryTelemetry] }
    /// `Ferry-Business-Status`: where the `pre-finish` business result of a complete upload stands.
    public var ferryBusinessStatus: String? { headerFields[.ferryBusinessStatus] }
    /// `Ferry-Business-Result`: the `pre-finish` callback's answer (compact JSON).
    public var ferryBusinessResult: String? { headerFields[.ferryBusinessResult] }
    /// `Upload-Expires`: when the server forgets an unfinished upload (an HTTP date).
    public var uploadExpires: String? { headerFields[.uploadExpires] }
    /// `Upload-Metadata`: the tus metadata pairs, as sent (values Base64-encoded).
    public var uploadMetadata: String? { headerFields[.uploadMetadata] }
    /// `Upload-Concat` (tus `concatenation`): `partial`, or `final;` and the parts.
    public var uploadConcat: String? { headerFields[.uploadConcat] }
    /// `Tus-Extension` (tus `OPTIONS`): the extensions the server supports.
    public var tusExtensions: Set<String> { Set(Self.list(headerFields[.tusExtension])) }
    /// `Ferry-Concatenation: copy`: the server copies partials' bytes into a final, so splitting
    /// a file into parallel streams costs a second write of it.
    public var concatenationCopies: Bool { Self.list(headerFields[.ferryConcatenation]).contains("copy") }
    /// `Tus-Checksum-Algorithm` (tus `OPTIONS`): the checksum algorithms the server verifies.
    public var tusChecksumAlgorithms: [String] { Self.list(headerFields[.tusChecksumAlgorithm]) }

    /// A non-negative decimal that fits in `Int64`.
    static func count(_ text: String?) -> Int64? {
        guard let text, !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int64(text)
    }

    /// The items of a comma-separated list, trimmed, without empty ones.
    static func list(_ text: String?) -> [String] {
        (text ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The value of `key=value` in a comma-separated list of parameters.
    static func parameter(_ key: String, of text: String?) -> String? {
        for item in list(text) {
            let pair = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0] == key { return pair[1] }
        }
        return nil
    }
}
