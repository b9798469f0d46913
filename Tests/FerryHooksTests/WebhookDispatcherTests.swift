import AsyncHTTPClient
import FerryCore
import FerryTestSupport
import Foundation
import Logging
import Testing

@testable import FerryHooks

/// A webhook URL whose POST fails inside the HTTP client before any connection is tried (the
/// client knows no such scheme): a failed attempt without a network.
let unreachable = "unsupported://hooks.test/events"

/// Quiet: the dead letters these tests make on purpose are logged as warnings.
let quiet: Logger = {
    var logger = Logger(label: "ferry-hooks-test")
    logger.logLevel = .critical
    return logger
}()

/// A dispatcher over `catalog` whose clock stands at `now`.
func dispatcher(
    _ catalog: MemoryCatalog = MemoryCatalog(),
    webhooks: [Webhook] = [],
    configuration: WebhookDispatcher.Configuration = .init(),
    now: Date = Date(timeIntervalSince1970: 1_700_000_000)
) -> WebhookDispatcher {
    WebhookDispatcher(
        catalog: catalog, scenarios: ScenarioSet([Scenario(name: "default", webhooks: webhooks)], defaultName: "default"), http: CallbackHTTP(client: HTTPClient.shared),
        wakeup: Wakeup(), configuration: configuration, logger: quiet, now: { now }
    )
}

@Suite("Webhook dispatcher: signatures, backoff, dead letters")
struct WebhookDispatcherTests {
    /// Vectors computed independently (Python's `hmac`): `HMAC-SHA256(secret, "<t>.<body>")` in hex.
    @Test(arguments: [
        ("0123456789abcdef", 1_700_000_000, #"{"type":"upload.created"}"#,
         "t=1700000000,v1=b0c27faaee424850a414c22e348eed91e2313077b214566513e4a8721438fcd3"),
        ("s", 0, "", "t=0,v1=2572e102ebbc88d57bc0ef48471ee28bb7fc8c6e9c0558b3c8e5d276f84ac9c3"),
        ("sécret ✓", 1, "[{},{}]", "t=1,v1=97b1acc33220da494cffb388fadf1576bf7c39ff5959207ea686ea164bd81491"),
    ])
    func signature(_ secret: String, _ timestamp: Int, _ body: String, _ expected: String) {
        #expect(WebhookDispatcher.signature(secret: secret, timestamp: timestamp, body: body) == expected)
    }

    @Test func theSignatureCoversSecretTimestampAndBody() {
        let base = WebhookDispatcher.signature(secret: "secret", timestamp: 10, body: "{}")
        #expect(WebhookDispatcher.signature(secret: "secret", timestamp: 10, body: "{}") == base)
        for other in [
            WebhookDispatcher.signature(secret: "secreT", timestamp: 10, body: "{}"),
            WebhookDispatcher.signature(secret: "secret", timestamp: 11, body: "{}"),
            WebhookDispatcher.signature(secret: "secret", timestamp: 10, body: "{ }"),
        ] {
            #expect(other != base)
        }
    }

    struct BackoffRow: Sendable, CustomTestStringConvertible {
        var base: Duration
        var cap: Duration
        var attempts: Int
        /// The ceiling: the delay lies between half of it and all of it.
        var ceiling: Double
        var testDescription: String { "base \(base), cap \(cap), after \(attempts) attempts" }
    }

    static let backoffs: [BackoffRow] = [
        BackoffRow(base: .seconds(1), cap: .seconds(600), attempts: 1, ceiling: 1),
        BackoffRow(base: .seconds(1), cap: .seconds(600), attempts: 2, ceiling: 2),
        BackoffRow(base: .seconds(1), cap: .seconds(600), attempts: 5, ceiling: 16),
        BackoffRow(base: .seconds(1), cap: .seconds(600), attempts: 10, ceiling: 512),
        BackoffRow(base: .seconds(1), cap: .seconds(600), attempts: 11, ceiling: 600),
        BackoffRow(base: .milliseconds(250), cap: .seconds(600), attempts: 3, ceiling: 1),
        BackoffRow(base: .seconds(5), cap: .seconds(30), attempts: 3, ceiling: 20),
        BackoffRow(base: .seconds(5), cap: .seconds(30), attempts: 4, ceiling: 30),
        // The exponent stops at 30: no overflow to infinity however many attempts were made.
        BackoffRow(base: .seconds(1), cap: .seconds(1 << 40), attempts: 31, ceiling: Double(1 << 30)),
        BackoffRow(base: .seconds(1), cap: .seconds(1 << 40), attempts: 10_000, ceiling: Double(1 << 30)),
        BackoffRow(base: .seconds(1), cap: .seconds(600), attempts: Int.max, ceiling: 600),
    ]

    @Test(arguments: backoffs)
    func backoff(_ row: BackoffRow) {
        let dispatcher = dispatcher(configuration: .init(retryBase: row.base, retryCap: row.cap))
        // Jittered: every draw lies in [ceiling / 2, ceiling].
        for _ in 0..<200 {
            let delay = dispatcher.backoff(after: row.attempts)
            #expect(delay >= row.ceiling / 2 && delay <= row.ceiling, "\(delay)")
        }
    }

    @Test func webhooksAreCollectedFromEveryScenario() {
        let scenarios = ScenarioSet(
            [
                Scenario(name: "voice", webhooks: [Webhook(url: "http://a", secret: "sa", batch: 0), Webhook(url: "http://b", secret: "sb", batch: 50)]),
                Scenario(name: "images", webhooks: [Webhook(url: "http://c", secret: "sc")]),
            ],
            defaultName: nil
        )
        let dispatcher = WebhookDispatcher(
            catalog: MemoryCatalog(), scenarios: scenarios, http: CallbackHTTP(client: HTTPClient.shared), wakeup: Wakeup(), logger: quiet
        )
        #expect(dispatcher.secrets == ["http://a": "sa", "http://b": "sb", "http://c": "sc"])
        // A batch below 1 is 1: each event alone.
        #expect(dispatcher.batchSizes == ["http://a": 1, "http://b": 50, "http://c": 1])
    }

    // MARK: One attempt's bookkeeping

    static let created = Date(timeIntervalSince1970: 1_700_000_000)

    /// An upload in `catalog` with one event for `url`, written at `created`; its delivery, as
    /// claimed after `attempts` failed attempts.
    func outbox(_ catalog: MemoryCatalog, _ letter: String, to url: String, attempts: Int = 0) async throws -> [EventDelivery] {
        let id = UploadID(String(repeating: letter, count: 16))!
        let events = [OutboxEvent(uploadID: id, sequence: 1, type: .created, destination: url, payload: #"{"n":1}"#, createdAt: Self.created)]
        try await catalog.insert(UploadRecord(id: id, length: 10, createdAt: Self.created), events: events)
        return try await catalog.deliveries(of: id).map { delivery in
            var delivery = delivery
            delivery.attempts = attempts
            return delivery
        }
    }

    @Test func anEventForAWebhookNoLongerConfiguredIsDeadAtOnce() async throws {
        let catalog = MemoryCatalog()
        let deliveries = try await outbox(catalog, "a", to: "http://removed.test/events", attempts: 4)
        await dispatcher(catalog, webhooks: [Webhook(url: "http://other.test", secret: "s")]).attempt(deliveries)
        let after = try await catalog.deliveries(of: deliveries[0].event.uploadID)
        #expect(after.map(\.state) == [.dead])
        #expect(after.map(\.attempts) == [5])
        #expect(after.first?.lastError == "no configured webhook has this URL any more")
    }

    struct FailureRow: Sendable, CustomTestStringConvertible {
        var name: String
        /// How long after the event was written the attempt fails.
        var age: Double
        var attempts: Int
        var batch: Int = 1
        var events: Int64 = 1
        /// nil: dead; else the ceiling of the retry delay, in seconds.
        var retryCeiling: Double?
        var testDescription: String { name }
    }

    /// With `retryBase` 1 s, `retryCap` 60 s and `deadLetterAfter` one hour.
    static let failures: [FailureRow] = [
        FailureRow(name: "a first failure is retried within a second", age: 0, attempts: 0, retryCeiling: 1),
        FailureRow(name: "a fourth failure within 8 s", age: 30, attempts: 3, retryCeiling: 8),
        FailureRow(name: "a late failure waits at most the cap", age: 1800, attempts: 20, retryCeiling: 60),
        FailureRow(name: "just before the dead-letter time: retried", age: 3599, attempts: 40, retryCeiling: 60),
        FailureRow(name: "at the dead-letter time: dead", age: 3600, attempts: 40, retryCeiling: nil),
        FailureRow(name: "long after: dead", age: 86_400, attempts: 2, retryCeiling: nil),
        FailureRow(name: "a failed batch: every event retried", age: 10, attempts: 1, batch: 10, events: 3, retryCeiling: 2),
        FailureRow(name: "a failed batch past the dead-letter time: every event dead", age: 7200, attempts: 1, batch: 10, events: 3, retryCeiling: nil),
    ]

    @Test(arguments: failures)
    func aFailedAttempt(_ row: FailureRow) async throws {
        let catalog = MemoryCatalog()
        let now = Self.created.addingTimeInterval(row.age)
        let dispatcher = dispatcher(
            catalog, webhooks: [Webhook(url: unreachable, secret: "s", batch: row.batch)],
            configuration: .init(retryBase: .seconds(1), retryCap: .seconds(60), deadLetterAfter: .seconds(3600)), now: now
        )
        // One POST for all the events (the claim holds one per upload, so one upload each here).
        var deliveries: [EventDelivery] = []
        for letter in ["a", "b", "c", "d"].prefix(Int(row.events)) {
            deliveries += try await outbox(catalog, letter, to: unreachable, attempts: row.attempts)
        }
        await dispatcher.attempt(deliveries)
        for delivery in deliveries {
            let after = try #require(try await catalog.deliveries(of: delivery.event.uploadID).first)
            #expect(after.attempts == row.attempts + 1)
            #expect(after.lastError?.isEmpty == false)
            if let ceiling = row.retryCeiling {
                #expect(after.state == .pending)
                let delay = after.nextAttemptAt.timeIntervalSince(now)
                #expect(delay >= ceiling / 2 && delay <= ceiling, "retry in \(delay) s")
            } else {
                #expect(after.state == .dead)
            }
        }
    }
}

@Suite("Business callbacks over HTTP: what can be checked without a network")
struct HTTPBusinessCallbacksTests {
    @Test(arguments: [
        (#"{"b":1,"a":"x"}"#, #"{"b":1,"a":"x"}"#),
        (#"  { "id" : "b-1" , "nested": {"z": [1, 2]} }  "#, #"{"id":"b-1","nested":{"z":[1,2]}}"#),
        ("{\r\n\t\"a\" :\n[ ]\t,\"b\":{ } }\n", #"{"a":[],"b":{}}"#),
        (#"{"n":[-0,0.5,1e9,-12.25E-3,1E+2,12345678901234567890]}"#, #"{"n":[-0,0.5,1e9,-12.25E-3,1E+2,12345678901234567890]}"#),
        (#"{"l":[true,false,null],"s":"q\"b\\s\/n\n\u00E9\u0000"}"#, #"{"l":[true,false,null],"s":"q\"b\\s\/n\n\u00E9\u0000"}"#),
        (#"{"deep":[[[[{"a":[[]]}]]]]}"#, #"{"deep":[[[[{"a":[[]]}]]]]}"#),
        ("{\"del\":\"\u{7F}\",\"ß中\":\"x\"}", #"{"del":"\u007f","\u00df\u4e2d":"x"}"#),
        (#"{"a":1,}"#, nil),
        (#"{"a":[1,]}"#, nil),
        (#"{"a" 1}"#, nil),
        (#"{a:1}"#, nil),
        (#"{"a":01}"#, nil),
        (#"{"a":1.}"#, nil),
        (#"{"a":.5}"#, nil),
        (#"{"a":1e}"#, nil),
        (#"{"a":+1}"#, nil),
        (#"{"a":tru}"#, nil),
        (#"{"a":"\x"}"#, nil),
        (#"{"a":"\u12G4"}"#, nil),
        ("{\"a\":\"tab\there\"}", nil),
        (#"{"a":"open}"#, nil),
        (#"{"a":1}}"#, nil),
        (#"{"a":1} {}"#, nil),
        (#"{"a":[1}"#, nil),
        (#"{"a":{"b":1]}"#, nil),
        (#"{"a":1"#, nil),
        ("{", nil),
        (#"{"name":"café"}"#, #"{"name":"caf\u00e9"}"#),
        (#"{"emoji":"🚀"}"#, #"{"emoji":"\ud83d\ude80"}"#),
        (#"{"url":"https://x/y"}"#, #"{"url":"https://x/y"}"#),
        (#"{}"#, #"{}"#),
        (#"[1,2]"#, nil),
        (#""text""#, nil),
        ("42", nil),
        ("not json", nil),
        ("", nil),
    ] as [(String, String?)])
    func compactASCII(_ answer: String, _ expected: String?) {
        // The answer is checked as JSON, as the business system wrote it: key order and number
        // spelling kept, insignificant whitespace dropped.
        let compact = HTTPBusinessCallbacks.compactASCII(Data(answer.utf8))
        #expect(compact == expected)
        if let compact {
            #expect(compact.utf8.allSatisfy { (0x20...0x7E).contains($0) }, "fit for a header")
        }
    }

    @Test func compactASCIIRefusesMalformedUTF8AndSurvivesDeepNesting() {
        let malformed: [[UInt8]] = [
            [0xC0, 0xAF],  // overlong "/"
            [0xE0, 0x80, 0xAF],  // overlong
            [0xED, 0xA0, 0x80],  // a surrogate
            [0xF4, 0x90, 0x80, 0x80],  // past U+10FFFF
            [0xC3],  // cut short
            [0x80],  // a continuation alone
            [0xFF],
        ]
        for bytes in malformed {
            let answer = Array(#"{"a":""#.utf8) + bytes + Array(#""}"#.utf8)
            #expect(HTTPBusinessCallbacks.compactASCII(Data(answer)) == nil, "\(bytes)")
        }
        let deep = String(repeating: "[", count: 100_000)
        #expect(HTTPBusinessCallbacks.compactASCII(Data(("{\"a\":" + deep).utf8)) == nil)
        let balanced = "{\"a\":" + deep + String(repeating: "]", count: 100_000) + "}"
        #expect(HTTPBusinessCallbacks.compactASCII(Data(balanced.utf8)) == balanced)
    }

    @Test func aCallbackThatCannotBeReachedFailsWithItsCode() async throws {
        let callbacks = HTTPBusinessCallbacks(http: HTTPClient.shared)
        let request = PreCreateRequest(scenario: "voice", owner: "alice", length: 10, metadata: try UploadMetadata(tusHeader: "filename YS5tcDM="))
        do {
            _ = try await callbacks.preCreate(request, url: unreachable, timeout: .seconds(5))
            Issue.record("pre-create succeeded")
        } catch {
            #expect(error.code == .callbackFailed)
        }
        let record = UploadRecord(id: UploadID(String(repeating: "a", count: 16))!, length: 0, state: .complete, createdAt: Date(timeIntervalSince1970: 0))
        do {
            _ = try await callbacks.preFinish(record, location: "http://x/files/a", url: unreachable, timeout: .seconds(5))
            Issue.record("pre-finish succeeded")
        } catch {
            #expect(error.code == .callbackFailed)
        }
    }
}
