import FerryCore
import FerryProtocol
import HTTPTypes

/// The tus 1.0.0 dialect: a request head in, an `UploadCommand` out; an `UploadOutcome` in,
/// the tus answer out. Pure: no I/O, no framework.
public struct TusDialect: UploadDialect {
    /// What an answer needs of its request.
    public struct Context: Sendable {
        /// The method, after `X-HTTP-Method-Override`.
        public var method: HTTPRequest.Method
        /// The absolute URL of the collection (`Location` = this + id).
        public var collectionURL: String

        public init(method: HTTPRequest.Method, collectionURL: String) {
            self.method = method
            self.collectionURL = collectionURL
        }
    }

    public static let version = "1.0.0"

    public let routes: UploadRoutes
    public let capabilities: EngineCapabilities

    public init(routes: UploadRoutes, capabilities: EngineCapabilities) {
        self.routes = routes
        self.capabilities = capabilities
    }

    public var name: String { "tus" }

    /// The `Tus-Extension` list, derived from what the engine's seams can do.
    public var extensions: [String] {
        var list = ["creation", "creation-with-upload", "creation-defer-length"]
        if capabilities.expiration { list.append("expiration") }
        list += ["checksum", "checksum-trailer"]
        if capabilities.termination { list.append("termination") }
        if capabilities.concatenation { list += ["concatenation", "concatenation-unfinished"] }
        return list
    }

    /// Every request under the collection that no other dialect claims.
    public func claims(_ request: HTTPRequest) -> Bool {
        routes.handles(path: request.path ?? "/")
    }

    public func context(of request: HTTPRequest) -> Context {
        Context(method: Self.method(of: request), collectionURL: routes.collectionURL(request))
    }

    /// For clients behind proxies that pass only GET and POST: a POST may say it is a PATCH or
    /// DELETE. A safe method is never turned into an unsafe one (a GET link or an image tag
    /// must not delete an upload).
    static func method(of request: HTTPRequest) -> HTTPRequest.Method {
        guard request.method == .post, let override = request.headerFields[.methodOverride],
            let overridden = HTTPRequest.Method(override.uppercased())
        else { return request.method }
        return overridden
    }

    public func parse(_ request: HTTPRequest, _ context: Context) throws(FerryError) -> UploadCommand {
        let method = context.method
        let fields = TusFields(fields: request.headerFields)
        let id: UploadID
        switch try routes.target(of: request) {
        case .collection(let scenario):
            if method == .options { return .options(scenario: scenario) }
            try requireVersion(request)
            guard method == .post else { throw FerryError(.methodNotAllowed, "the upload collection accepts POST and OPTIONS") }
            return try creation(request, fields, scenario: scenario, collectionURL: context.collectionURL)
        case .upload(let upload):
            id = upload
        }
        switch method {
        case .options:
            return .options(scenario: nil)
        case .get:
            guard capabilities.content else { throw FerryError(.methodNotAllowed, "this server does not serve uploads back") }
            return .read(id, ByteRange.Request(request.headerFields[.range]), otherwise: .refuse)
        default:
            break
        }
        try requireVersion(request)
        switch method {
        case .head: return .status(id)
        case .patch: return .append(id, try append(fields, request.headerFields))
        case .delete: return .terminate(id)
        default: throw FerryError(.methodNotAllowed, "an upload accepts HEAD, PATCH, GET, DELETE and OPTIONS")
        }
    }

    private func requireVersion(_ request: HTTPRequest) throws(FerryError) {
        guard request.headerFields[.tusResumable] == Self.version else {
            throw FerryError(.unsupportedVersion, "this server speaks tus \(Self.version); send Tus-Resumable: \(Self.version)")
        }
    }

    /// POST on the collection: `creation`, `creation-with-upload`, `creation-defer-length`,
    /// and the `concatenation` partial and final forms.
    private func creation(_ request: HTTPRequest, _ fields: TusFields, scenario: String?, collectionURL: String) throws(FerryError) -> UploadCommand {
        let metadata = try fields.metadata
        var isPartial = false
        if let concat = request.headerFields[.uploadConcat] {
            if concat == "partial" {
                isPartial = true
            } else if concat.hasPrefix("final;") {
                return try final(request, fields, concat, metadata, scenario: scenario, collectionURL: collectionURL)
            } else {
                throw FerryError(.invalidConcat, "Upload-Concat is `partial` or `final;<url> <url> ...`")
            }
        }
        let length = try fields.decimal(.uploadLength, .invalidLength)
        let deferLength = request.headerFields[.uploadDeferLength]
        if let deferLength, deferLength != "1" {
            throw FerryError(.invalidDeferLength, "Upload-Defer-Length must be 1")
        }
        guard (length == nil) != (deferLength == nil) else {
            throw FerryError(.lengthRequired, "send exactly one of Upload-Length and Upload-Defer-Length")
        }
        let withUpload = fields.isOffsetStream
        if fields.hasBody, !withUpload {
            throw FerryError(.invalidContentType, "a creation body must be sent as application/offset+octet-stream")
        }
        let checksum = try fields.checksum
        if let length, let contentLength = fields.contentLength, contentLength > length {
            throw FerryError(.lengthExceeded, "the body is longer than Upload-Length")
        }
        let announced = try DigestField.announcedSHA256(request.headerFields)
        let spec = UploadEngine.CreateSpec(
            length: length, metadata: metadata, isPartial: isPartial, scenario: scenario,
            info: request.headerFields.requestInfo(dialect: name, metadata: metadata), address: routes.forwardedAddress(request),
            announcedSHA256: announced, mayChallenge: announced != nil && !fields.hasBody
        )
        let upload = withUpload
            ? AppendRequest(
                offset: 0, contentLength: fields.contentLength, checksum: checksum,
                expectsTrailerChecksum: fields.announcesChecksumTrailer, method: "POST"
            )
            : nil
        return .create(UploadCommand.Creation(spec: spec, upload: upload, hasBody: fields.hasBody))
    }

    private func final(
        _ request: HTTPRequest,
        _ fields: TusFields,
        _ concat: String,
        _ metadata: UploadMetadata,
        scenario: String?,
        collectionURL: String
    ) throws(FerryError) -> UploadCommand {
        guard capabilities.concatenation else {
            throw FerryError(.invalidConcat, "this server does not concatenate uploads")
        }
        if request.headerFields[.uploadLength] != nil || request.headerFields[.uploadDeferLength] != nil {
            throw FerryError(.invalidConcat, "a final upload takes its length from its partials: omit Upload-Length")
        }
        if fields.hasBody {
            throw FerryError(.invalidConcat, "a final upload cannot carry a body")
        }
        var parts: [UploadID] = []
        for reference in concat.dropFirst("final;".count).split(separator: " ", omittingEmptySubsequences: true) {
            parts.append(try routes.upload(referencedBy: reference, collectionURL: collectionURL))
        }
        return .concatenate(
            UploadCommand.Concatenation(
                parts: parts, metadata: metadata, scenario: scenario, forwardedAddress: routes.forwardedAddress(request), request: concat,
                info: request.headerFields.requestInfo(dialect: name, metadata: metadata)
            )
        )
    }

    /// PATCH: an append at `Upload-Offset`.
    private func append(_ fields: TusFields, _ headers: HTTPFields) throws(FerryError) -> AppendRequest {
        guard fields.isOffsetStream else {
            throw FerryError(.invalidContentType, "PATCH bodies are sent as application/offset+octet-stream")
        }
        guard let offset = try fields.decimal(.uploadOffset, .invalidOffset) else {
            throw FerryError(.invalidOffset, "PATCH requires Upload-Offset")
        }
        if let proof = try headers.instantProof(hasBody: fields.hasBody) {
            return AppendRequest(offset: offset, contentLength: 0, proof: proof)
        }
        return AppendRequest(
            offset: offset,
            contentLength: fields.contentLength,
            declaredLength: try fields.decimal(.uploadLength, .invalidLength),
            checksum: try fields.checksum,
            expectsTrailerChecksum: fields.announcesChecksumTrailer
        )
    }
}
