/// One append (a tus PATCH, or the body of a creation-with-upload), as the engine sees it.
public struct AppendRequest: Sendable, Equatable {
    /// The offset the client believes is stored; must equal the stored offset.
    public var offset: Int64
    /// The body length, when the client declared one.
    public var contentLength: Int64?
    /// A total length the client declares now (deferred-length uploads only).
    public var declaredLength: Int64?
    /// A digest the body must match, declared in the headers.
    public var checksum: ChecksumExpectation?
    /// The client announced a checksum in the trailers (`Trailer: Upload-Checksum`).
    public var expectsTrailerChecksum: Bool
    /// The end of this body is the end of the upload (RUFH `Upload-Complete: ?1`): a body that
    /// ends properly fixes a still unknown length, and must end exactly at a known one.
    public var completesUpload: Bool
    /// Reaching the known length completes the upload (tus). RUFH says no: offset and length do
    /// not decide completion, only a request saying `Upload-Complete: ?1` does.
    public var completesAtLength: Bool
    /// Refuse (`ERR_UPLOAD_COMPLETED`) instead of accepting an empty append to a complete upload.
    public var refusesComplete: Bool
    /// Compute the SHA-256 of the whole upload when this request completes it, even if its
    /// scenario needs none (RUFH `Repr-Digest` / `Want-Repr-Digest`).
    public var wantsDigest: Bool
    /// The SHA-256 the whole upload must have when this request completes it; on a mismatch
    /// this request's bytes are not kept.
    public var expectedSHA256: [UInt8]?
    /// The HTTP method that carries the body (statistics: `POST` for a creation's body).
    public var method: String
    /// A `Ferry-Proof`: the answer to the upload's instant-upload challenge, sent instead of a
    /// body (docs/instant-upload.md).
    public var proof: [UInt8]?

    public init(
        offset: Int64,
        contentLength: Int64? = nil,
        declaredLength: Int64? = nil,
        checksum: ChecksumExpectation? = nil,
        expectsTrailerChecksum: Bool = false,
        completesUpload: Bool = false,
        completesAtLength: Bool = true,
        refusesComplete: Bool = false,
        wantsDigest: Bool = false,
        expectedSHA256: [UInt8]? = nil,
        method: String = "PATCH",
        proof: [UInt8]? = nil
    ) {
        self.proof = proof
        self.method = method
        self.offset = offset
        self.contentLength = contentLength
        self.declaredLength = declaredLength
        self.checksum = checksum
        self.expectsTrailerChecksum = expectsTrailerChecksum
        self.completesUpload = completesUpload
        self.completesAtLength = completesAtLength
        self.refusesComplete = refusesComplete
        self.wantsDigest = wantsDigest || expectedSHA256 != nil
        self.expectedSHA256 = expectedSHA256
    }
}

/// How a request body ended, as the transport saw it.
public struct BodyEnd: Sendable, Equatable {
    /// The client ended the body properly (all declared bytes, or the last chunk).
    public var complete: Bool
    /// The raw `Upload-Checksum` trailer, if one came.
    public var trailerChecksum: String?

    public init(complete: Bool, trailerChecksum: String? = nil) {
        self.complete = complete
        self.trailerChecksum = trailerChecksum
    }
}

/// What the engine needs from the transport around a request body.
public protocol BodyTransport: Sendable {
    /// Called once the request passed every check, just before the body is read
    /// (answers `Expect: 100-continue`).
    func willReadBody() async
    /// Called after the body sequence ended normally: did the client end it properly?
    func bodyEnded() async -> BodyEnd
    /// Called after a long append committed a checkpoint: `offset` is durable (RUFH answers
    /// it as an interim `104` with `Upload-Offset`).
    func checkpointed(offset: Int64) async
    /// The client's network address (for per-address limits of anonymous clients); nil if unknown.
    var clientAddress: String? { get }
}

extension BodyTransport {
    public func checkpointed(offset: Int64) async {}
    public var clientAddress: String? { nil }
}
