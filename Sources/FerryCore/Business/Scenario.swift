/// One kind of upload (voice messages, chat images, ...) with its own rules, callbacks and
/// events. See docs/business.md.
public struct Scenario: Sendable, Equatable {
    public var name: String
    /// Largest upload, in bytes; nil for the server's limit.
    public var maxSize: Int64?
    /// Allowed media types (`image/jpeg` or `image/*`); empty allows any.
    public var contentTypes: [String]
    /// Metadata keys every creation must carry.
    public var requiredMetadata: [String]
    /// Incomplete uploads expire this long after their last stored byte; nil uses the server's.
    public var expiry: Duration?
    /// Every PATCH must carry `Upload-Checksum` (or announce its trailer).
    public var checksumRequired: Bool
    /// Requests without a token may create and use uploads of this scenario.
    public var allowsAnonymous: Bool
    /// Called before an upload is created; may refuse it or add metadata.
    public var preCreate: String?
    /// Called once the last byte is stored; its JSON answer is the upload's business result.
    public var preFinish: String?
    /// How long a callback may take.
    public var callbackTimeout: Duration
    public var webhooks: [Webhook]
    /// `upload.progress` is written at most this often per upload.
    public var progressInterval: Duration
    /// Where the scenario's files go, relative to the store's root (a folder under
    /// `<data>/uploads/`, a key prefix in the bucket); nil for the root.
    public var directory: String?
    /// Whether and where a creation may find its content already stored (docs/instant-upload.md).
    public var instantUpload: InstantUploadRules

    public init(
        name: String,
        maxSize: Int64? = nil,
        contentTypes: [String] = [],
        requiredMetadata: [String] = [],
        expiry: Duration? = nil,
        checksumRequired: Bool = false,
        allowsAnonymous: Bool = false,
        preCreate: String? = nil,
        preFinish: String? = nil,
        callbackTimeout: Duration = .seconds(5),
        webhooks: [Webhook] = [],
        progressInterval: Duration = .seconds(5),
        directory: String? = nil,
        instantUpload: InstantUploadRules = InstantUploadRules()
    ) {
        self.name = name
        self.maxSize = maxSize
        self.contentTypes = contentTypes
        self.requiredMetadata = requiredMetadata
        self.expiry = expiry
        self.checksumRequired = checksumRequired
        self.allowsAnonymous = allowsAnonymous
        self.preCreate = preCreate
        self.preFinish = preFinish
        self.callbackTimeout = callbackTimeout
        self.webhooks = webhooks
        self.progressInterval = progressInterval
        self.directory = directory
        self.instantUpload = instantUpload
    }

    /// True when `directory` is a safe relative path: segments of `a-z 0-9 - _`, no `..`.
    public static func isValidDirectory(_ directory: String) -> Bool {
        let segments = directory.split(separator: "/", omittingEmptySubsequences: false)
        return !segments.isEmpty && segments.count <= 8 && segments.allSatisfy { segment in
            (1...64).contains(segment.count) && segment.utf8.allSatisfy(isNameByte)
        }
    }

    /// The scenario of the embedded defaults: anything, anonymously.
    public static let openDefault = Scenario(name: "default", allowsAnonymous: true)

    /// True when a scenario name is well formed: 1-64 of `a-z 0-9 - _`, and not an upload id.
    public static func isValidName(_ name: String) -> Bool {
        guard (1...64).contains(name.count), UploadID(name) == nil else { return false }
        return name.utf8.allSatisfy(isNameByte)
    }

    static func isNameByte(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }

    /// True when `type` (a media type, parameters ignored) is allowed.
    public func allows(contentType type: String) -> Bool {
        if contentTypes.isEmpty { return true }
        let bare = Self.bareType(type)
        return contentTypes.contains { pattern in
            pattern.hasSuffix("/*") ? bare.hasPrefix(pattern.dropLast()) : bare == pattern
        }
    }

    /// True when the scenario lists `type` itself (not through a wildcard).
    public func listsExactly(_ type: String) -> Bool {
        contentTypes.contains(Self.bareType(type))
    }

    static func bareType(_ type: String) -> String {
        String(type.split(separator: ";", maxSplits: 1).first ?? "").trimmingCharacters(in: .whitespaces).lowercased()
    }

    /// Webhooks that subscribe to `event`.
    public func webhooks(for event: UploadEventType) -> [Webhook] {
        webhooks.filter { $0.events.contains(event) }
    }
}

/// An endpoint that receives a scenario's events.
public struct Webhook: Sendable, Equatable {
    public var url: String
    /// Key of the `Ferry-Signature` HMAC.
    public var secret: String
    public var events: Set<UploadEventType>
    /// The most events one POST carries: 1 sends each event alone (the body is the event);
    /// more sends a JSON array of the events that are due, at most one per upload.
    public var batch: Int

    public init(url: String, secret: String, events: Set<UploadEventType> = Set(UploadEventType.allCases), batch: Int = 1) {
        self.url = url
        self.secret = secret
        self.events = events
        self.batch = batch
    }
}

/// The scenarios a server knows, and how a request picks one.
public struct ScenarioSet: Sendable, Equatable {
    public private(set) var scenarios: [String: Scenario]
    /// Used by creations that name no scenario; nil makes naming one mandatory.
    public var defaultName: String?

    public init(_ scenarios: [Scenario], defaultName: String?) {
        self.scenarios = Dictionary(scenarios.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        self.defaultName = defaultName
    }

    /// The embedded defaults: one open scenario, `default`.
    public static let open = ScenarioSet([.openDefault], defaultName: "default")

    /// The scenario a creation asks for: by path, else by the `scenario` metadata, else the default.
    public func resolve(path: String?, metadata: UploadMetadata) throws(FerryError) -> Scenario {
        let name = path ?? metadata.string("scenario") ?? defaultName
        guard let name else {
            throw FerryError(.scenarioNotFound, "name a scenario: POST /files/<scenario>/")
        }
        return try named(name)
    }

    public func named(_ name: String) throws(FerryError) -> Scenario {
        guard let scenario = scenarios[name] else {
            throw FerryError(.scenarioNotFound, "there is no scenario named \(name)")
        }
        return scenario
    }
}
