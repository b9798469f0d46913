import FerryCore
import FerryProtocol
import HTTPTypes

/// The IETF "Resumable Uploads for HTTP" dialect (draft interop versions 3, 5, 6, 7, 8, 9 and
/// the final form without the interop field), over the same engine, store, catalog, locks,
/// scenarios, authentication and callbacks as tus: an upload created here is an upload like
/// any other, and a tus client can inspect it (and the other way round).
///
/// Pure like `TusDialect`: a request head in, an `UploadCommand` out; an `UploadOutcome` in,
/// the answer (and its `104 Upload Resumption Supported`) out.
public struct RUFHDialect: UploadDialect {
    /// What an answer needs of its request.
    public struct Context: Sendable {
        public var form: RUFHForm
        /// The interop field named a version this server does not speak (answered in the final form).
        public var formError: FerryError?
        public var method: HTTPRequest.Method
        public var collectionURL: String
        /// The scenario the request targets (its limits, on a 413).
        public var scenario: String?
        /// `Want-Repr-Digest` asks for the SHA-256 of the whole upload.
        public var wantsReprDigest: Bool
    }

    public static let partialUploadType = "application/partial-upload"
    static let problemBase = "https://iana.org/assignments/http-problem-types#"

    public let routes: UploadRoutes
    public let capabilities: EngineCapabilities

    public init(routes: UploadRoutes, capabilities: EngineCapabilities) {
        self.routes = routes
        self.capabilities = capabilities
    }

    public var name: String { "rufh" }
    public var describesStateOnFailure: Bool { true }
    /// `104 Upload Resumption Supported`: a creation's, and progress during long appends.
    public var sendsInterims: Bool { true }
    /// Every draft: an append past the known length invalidates the upload.
    public var invalidatesOnOverrun: Bool { true }

    /// Whether a request under the base path speaks RUFH: it carries the interop field or
    /// `Upload-Complete`/`Upload-Incomplete` (and no `Tus-Resumable`), or it is a bare HEAD,
    /// GET or DELETE of an upload (the final text's offset retrieval and cancellation carry no
    /// field of their own), or an append typed `application/partial-upload`.
    public func claims(_ request: HTTPRequest) -> Bool {
        let fields = request.headerFields
        guard routes.handles(path: request.path ?? "/"), fields[.tusResumable] == nil else { return false }
        if fields[.uploadDraftInteropVersion] != nil || fields[.uploadComplete] != nil || fields[.uploadIncomplete] != nil {
            return true
        }
        guard case .upload = try? routes.target(of: request) else { return false }
        switch request.method {
        case .head, .get, .delete: return true
        case .patch: return fields.mediaType == Self.partialUploadType
        default: return false
        }
    }

    public func context(of request: HTTPRequest) -> Context {
        let fields = request.headerFields
        var form = RUFHForm(interop: nil)
        var formError: FerryError?
        do {
            form = try RUFHForm(fields)
        } catch {
            formError = error
        }
        var scenario: String?
        if case .collection(let name)? = try? routes.target(of: request) { scenario = name }
        let wanted = fields[.wantReprDigest].flatMap(StructuredField.wanted) ?? []
        return Context(
            form: form, formError: formError, method: request.method, collectionURL: routes.collectionURL(request),
            scenario: scenario, wantsReprDigest: wanted.contains("sha-256")
        )
    }

    public func parse(_ request: HTTPRequest, _ context: Context) throws(FerryError) -> UploadCommand {
        if let error = context.formError { throw error }
        let form = context.form
        switch try routes.target(of: request) {
        case .collection(let scenario):
            switch request.method {
            case .options: return .options(scenario: scenario)
            case .post, .put, .patch: return try creation(request, form, scenario: scenario)
            default: throw FerryError(.methodNotAllowed, "an upload is created by POST, PUT or PATCH with Upload-Complete")
            }
        case .upload(let id):
            switch request.method {
            case .options:
                return .options(scenario: nil)
            case .head:
                try refuseUploadFields(request, form)
                return .status(id)
            case .get:
                // Offset retrieval; the bytes of a complete upload where the store serves them.
                return capabilities.content ? .read(id, ByteRange.Request(request.headerFields[.range]), otherwise: .describe) : .status(id)
            case .patch:
                return .append(id, try append(request, form))
            case .delete:
                try refuseUploadFields(request, form)
                return .terminate(id)
            default:
                throw FerryError(.methodNotAllowed, "an upload accepts HEAD, GET, PATCH, DELETE and OPTIONS")
            }
        }
    }

    /// Drafts -01 to -05: "The request MUST NOT include an `Upload-Offset` or `Upload-Complete`
    /// header field. The server MUST reject …" (HEAD and DELETE).
    private func refuseUploadFields(_ request: HTTPRequest, _ form: RUFHForm) throws(FerryError) {
        guard form.forbidsUploadFieldsOnHeadAndDelete else { return }
        let fields = request.headerFields
        let completion: HTTPField.Name = form.usesIncomplete ? .uploadIncomplete : .uploadComplete
        for name in [HTTPField.Name.uploadOffset, completion] where fields[name] != nil {
            throw FerryError(.unexpectedField, "\(request.method.rawValue) of an upload must not carry \(name) in this draft")
        }
    }

    /// Upload creation: POST/PUT/PATCH on the collection with `Upload-Complete`. The upload
    /// exists before the body is read, and `104 Upload Resumption Supported` tells the client
    /// its URL then, so a creation cut mid-body resumes at the stored offset.
    private func creation(_ request: HTTPRequest, _ form: RUFHForm, scenario: String?) throws(FerryError) -> UploadCommand {
        let fields = request.headerFields
        guard let complete = try form.complete(fields) else {
            throw FerryError(.invalidLength, "a creation carries \(form.usesIncomplete ? "Upload-Incomplete" : "Upload-Complete")")
        }
        if let offset = fields[.uploadOffset], try StructuredField.integer(offset, "Upload-Offset", .invalidOffset) != 0 {
            throw FerryError(.invalidOffset, "a creation starts at offset 0")
        }
        let contentLength = fields[.contentLength].flatMap { Int64($0) }
        let uploadLength = try fields[.uploadLength].map { text throws(FerryError) in
            try StructuredField.integer(text, "Upload-Length", .invalidLength)
        }
        var length = uploadLength
        if complete, let contentLength {
            if let uploadLength, uploadLength != contentLength {
                throw FerryError(.inconsistentLength, "Upload-Length \(uploadLength) but the complete body is \(contentLength) bytes")
            }
            length = contentLength
        } else if let uploadLength, let contentLength, contentLength > uploadLength {
            throw FerryError(.inconsistentLength, "the body (\(contentLength) bytes) is longer than Upload-Length \(uploadLength)")
        }
        let digests = try Digests(fields)
        let metadata = try Self.metadata(fields)
        let hasBody = (contentLength ?? 0) > 0 || fields[.transferEncoding] != nil
        let spec = UploadEngine.CreateSpec(
            length: length, metadata: metadata, scenario: scenario,
            info: fields.requestInfo(dialect: name, metadata: metadata), address: routes.forwardedAddress(request),
            completesWhenEmpty: complete, announcedSHA256: digests.representation, mayChallenge: digests.representation != nil && !hasBody && !complete
        )
        let upload = AppendRequest(
            offset: 0,
            contentLength: contentLength,
            checksum: digests.content,
            completesUpload: complete,
            completesAtLength: false,
            wantsDigest: digests.wantsRepresentation,
            expectedSHA256: digests.representation,
            method: request.method.rawValue
        )
        return .create(UploadCommand.Creation(spec: spec, upload: upload, hasBody: hasBody))
    }

    /// Append: PATCH at `Upload-Offset`; the newest request on an upload wins, as for tus.
    private func append(_ request: HTTPRequest, _ form: RUFHForm) throws(FerryError) -> AppendRequest {
        let fields = request.headerFields
        if form.requiresPartialUploadType, fields.mediaType != Self.partialUploadType {
            throw FerryError(.invalidContentType, "appends are sent as \(Self.partialUploadType)")
        }
        guard let offsetText = fields[.uploadOffset] else {
            throw FerryError(.invalidOffset, "an append carries Upload-Offset")
        }
        let offset = try StructuredField.integer(offsetText, "Upload-Offset", .invalidOffset)
        let contentLength = fields[.contentLength].flatMap { Int64($0) }
        // The answer to a challenge replaces the body (whatever Upload-Complete says).
        if let proof = try fields.instantProof(hasBody: (contentLength ?? 0) > 0 || fields[.transferEncoding] != nil) {
            return AppendRequest(offset: offset, contentLength: 0, completesAtLength: false, proof: proof)
        }
        guard let complete = try form.complete(fields) else {
            throw FerryError(.invalidLength, "an append carries \(form.usesIncomplete ? "Upload-Incomplete" : "Upload-Complete")")
        }
        let uploadLength = try fields[.uploadLength].map { text throws(FerryError) in
            try StructuredField.integer(text, "Upload-Length", .invalidLength)
        }
        var declared = uploadLength
        if complete, let contentLength {
            let total = try offset.adding(contentLength, or: .invalidLength, "Upload-Offset plus Content-Length does not fit in 63 bits")
            if let uploadLength, uploadLength != total {
                throw FerryError(.inconsistentLength, "Upload-Length \(uploadLength) but this complete append ends at \(total)")
            }
            declared = total
        }
        let digests = try Digests(fields)
        return AppendRequest(
            offset: offset,
            contentLength: contentLength,
            declaredLength: declared,
            checksum: digests.content,
            completesUpload: complete,
            completesAtLength: false,
            refusesComplete: true,
            wantsDigest: digests.wantsRepresentation,
            expectedSHA256: digests.representation
        )
    }
}
