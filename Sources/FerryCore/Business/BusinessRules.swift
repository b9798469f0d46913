import Foundation

/// What the business side asks of the engine: scenarios, default quotas, and the callbacks
/// that let a business system refuse a creation or turn a finished file into a business id.
public struct BusinessRules: Sendable {
    public var scenarios: ScenarioSet
    /// Quotas of every authenticated principal (a token may lower them).
    public var quotas: Quotas
    /// Quotas of anonymous clients, each client address on its own (`[anonymous]` in the
    /// configuration file; `Quotas.anonymousDefault` unless set).
    public var anonymousQuotas: Quotas
    public var callbacks: any BusinessCallbacks
    /// Retries of a `pre-finish` callback that failed: from `retryBase`, doubling to
    /// `retryCap`, for `retryFor`, then `failed`.
    public var retryBase: Duration
    public var retryCap: Duration
    public var retryFor: Duration

    public init(
        scenarios: ScenarioSet = .open,
        quotas: Quotas = Quotas(),
        anonymousQuotas: Quotas = .anonymousDefault,
        callbacks: any BusinessCallbacks = NoBusinessCallbacks(),
        retryBase: Duration = .seconds(1),
        retryCap: Duration = .seconds(300),
        retryFor: Duration = .seconds(24 * 3600)
    ) {
        self.scenarios = scenarios
        self.quotas = quotas
        self.anonymousQuotas = anonymousQuotas
        self.callbacks = callbacks
        self.retryBase = retryBase
        self.retryCap = retryCap
        self.retryFor = retryFor
    }

    /// The embedded defaults: one open scenario, no quotas for tokens, the default ones per
    /// anonymous client address, no callbacks.
    public static let open = BusinessRules()
}

/// A creation, as a `pre-create` callback sees it.
public struct PreCreateRequest: Sendable {
    public var scenario: String
    public var owner: String?
    public var length: Int64?
    public var metadata: UploadMetadata

    public init(scenario: String, owner: String?, length: Int64?, metadata: UploadMetadata) {
        self.scenario = scenario
        self.owner = owner
        self.length = length
        self.metadata = metadata
    }
}

/// A `pre-create` callback's answer.
public enum PreCreateDecision: Sendable, Equatable {
    /// Create the upload, with these metadata entries added or replaced.
    case accept(metadata: [String: String])
    /// Refuse it with this status (400-499) and message.
    case reject(status: Int, message: String)
}

/// The synchronous calls to a scenario's business system (an HTTP implementation lives in
/// `FerryHooks`).
public protocol BusinessCallbacks: Sendable {
    /// Asks `url` whether a creation may go ahead. Throws `ERR_CALLBACK_FAILED` when the
    /// endpoint fails or does not answer within `timeout`.
    func preCreate(_ request: PreCreateRequest, url: String, timeout: Duration) async throws(FerryError) -> PreCreateDecision

    /// Hands a complete upload to `url`; returns its JSON answer, compact and ASCII. Throws
    /// `ERR_CALLBACK_FAILED` when the endpoint fails, answers no JSON object, or times out.
    func preFinish(_ upload: UploadRecord, location: String, url: String, timeout: Duration) async throws(FerryError) -> String
}

/// No callbacks configured: any scenario that names one fails (validation prevents it).
public struct NoBusinessCallbacks: BusinessCallbacks {
    public init() {}

    public func preCreate(_ request: PreCreateRequest, url: String, timeout: Duration) async throws(FerryError) -> PreCreateDecision {
        throw FerryError(.callbackFailed, "no callback client is configured")
    }

    public func preFinish(_ upload: UploadRecord, location: String, url: String, timeout: Duration) async throws(FerryError) -> String {
        throw FerryError(.callbackFailed, "no callback client is configured")
    }
}
