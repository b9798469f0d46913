import FerryAuth
import FerryCore
import FerryHooks
import FerryHTTP

/// Scenarios, authentication, quotas, callbacks and events: the business side of a server
/// (docs/business.md). The embedded defaults run one open scenario without tokens.
public struct BusinessConfiguration: Sendable {
    public var scenarios: ScenarioSet
    /// Quotas of every authenticated principal.
    public var quotas: Quotas
    /// Quotas of each anonymous client address (`[anonymous]`).
    public var anonymousQuotas: Quotas
    /// Keys that verify bearer tokens; turned into `authenticator` at start-up.
    public var auth: JWTAuthenticator.Configuration
    /// Set by `prepare()` (or by tests): verifies tokens.
    public var authenticator: any Authenticator
    /// Bearer token of the admin API (delivery state); nil disables it.
    public var adminToken: String?
    public var events: WebhookDispatcher.Configuration
    /// `[tls]`: the certificate and key files, as written (relative paths are relative to the
    /// configuration file; `ferry serve` resolves them). `--tls-cert`/`--tls-key` override.
    public var tls: TLSFiles?

    public init(
        scenarios: ScenarioSet = .open,
        quotas: Quotas = Quotas(),
        anonymousQuotas: Quotas = .anonymousDefault,
        auth: JWTAuthenticator.Configuration = .init(),
        authenticator: any Authenticator = AnonymousAuthenticator(),
        adminToken: String? = nil,
        events: WebhookDispatcher.Configuration = .init()
    ) {
        self.scenarios = scenarios
        self.quotas = quotas
        self.anonymousQuotas = anonymousQuotas
        self.auth = auth
        self.authenticator = authenticator
        self.adminToken = adminToken
        self.events = events
    }

    /// Loads the token keys (async: the key collection is an actor); call once before serving.
    public mutating func prepare() async throws(FerryError) {
        if auth.hasKeys { authenticator = try await JWTAuthenticator.make(auth) }
    }

    /// True when any scenario calls a business endpoint or a webhook (an HTTP client is needed).
    var needsHTTPClient: Bool {
        scenarios.scenarios.values.contains { $0.preCreate != nil || $0.preFinish != nil || !$0.webhooks.isEmpty }
    }

    var hasWebhooks: Bool { scenarios.scenarios.values.contains { !$0.webhooks.isEmpty } }
}
