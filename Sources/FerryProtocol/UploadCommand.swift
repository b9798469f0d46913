import FerryCore

/// What one request asks of the engine, in no dialect's terms: the result of a dialect's
/// `parse`, run by `UploadDispatcher`.
///
/// Boxed (`indirect`): it is held in the frames of a request's call chain while its body is read.
public indirect enum UploadCommand: Sendable, Equatable {
    /// OPTIONS on the collection (or one scenario's): the limits new uploads get.
    case options(scenario: String?)
    case create(Creation)
    /// A concatenation final (tus `Upload-Concat: final;…`).
    case concatenate(Concatenation)
    /// Where an upload stands (tus HEAD, RUFH offset retrieval).
    case status(UploadID)
    case append(UploadID, AppendRequest)
    /// The bytes of a complete upload; `otherwise` says what an incomplete one answers.
    case read(UploadID, ByteRange.Request, otherwise: IncompleteRead)
    case terminate(UploadID)

    /// What a read of an upload that is not complete answers.
    public enum IncompleteRead: Sendable, Equatable {
        /// `ERR_UPLOAD_INCOMPLETE` (tus: GET serves complete uploads only).
        case refuse
        /// Its state, as `status` would (RUFH: GET is an offset retrieval).
        case describe
    }

    /// A new upload, and (`upload`) the first append of its body.
    public struct Creation: Sendable, Equatable {
        /// What is created; the dispatcher fills in who creates it (principal, address).
        public var spec: UploadEngine.CreateSpec
        /// The request's body as the first append; nil when it may carry none.
        public var upload: AppendRequest?
        /// The request announced a body (a positive `Content-Length`, or chunked).
        public var hasBody: Bool

        public init(spec: UploadEngine.CreateSpec, upload: AppendRequest? = nil, hasBody: Bool = false) {
            self.spec = spec
            self.upload = upload
            self.hasBody = hasBody
        }

        /// Whether the engine reads (or, for an empty upload that the request completes, ends)
        /// the body once `record` exists.
        public func appends(to record: UploadRecord) -> Bool {
            guard let upload else { return false }
            return hasBody || (upload.completesUpload && !record.isComplete)
        }
    }

    /// A final built from partials, in order.
    public struct Concatenation: Sendable, Equatable {
        public var parts: [UploadID]
        public var metadata: UploadMetadata
        public var scenario: String?
        /// The client's address as a trusted proxy reports it.
        public var forwardedAddress: String?
        /// The `Upload-Concat` value as the client sent it (echoed by HEAD).
        public var request: String
        /// Who creates it (statistics).
        public var info: RequestInfo

        public init(
            parts: [UploadID],
            metadata: UploadMetadata = UploadMetadata(),
            scenario: String? = nil,
            forwardedAddress: String? = nil,
            request: String,
            info: RequestInfo = RequestInfo()
        ) {
            self.info = info
            self.parts = parts
            self.metadata = metadata
            self.scenario = scenario
            self.forwardedAddress = forwardedAddress
            self.request = request
        }
    }

    /// The upload a command is about, if any.
    public var upload: UploadID? {
        switch self {
        case .options, .create, .concatenate: nil
        case .status(let id), .append(let id, _), .read(let id, _, _), .terminate(let id): id
        }
    }
}
