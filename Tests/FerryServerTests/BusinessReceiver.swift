import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// A business system for live tests: webhooks (signature checked, the first N attempts of
/// each event refused), a `pre-finish` endpoint that can be switched to fail, and a
/// `pre-create` endpoint that refuses metadata `block`.
final class BusinessReceiver: Sendable {
    struct Event: Sendable {
        var id: String
        var type: String
        var sequence: Int
        var upload: String
        var signatureValid: Bool
    }

    struct State: Sendable {
        var events: [Event] = []
        var attempts: [String: Int] = [:]
        var failFirst = 0
        var preFinishFails = false
        var preFinishCalls = 0
        /// Events per POST, in arrival order (a batch is more than one).
        var postSizes: [Int] = []
        /// POSTs whose `Ferry-Event-Count` was missing or wrong for the body.
        var badCounts = 0
    }

    let state = Mutex(State())
    let secret: String
    let port: Int

    private init(secret: String, port: Int) {
        self.secret = secret
        self.port = port
    }

    var url: String { "http://127.0.0.1:\(port)" }

    /// Runs a receiver for the duration of `body`.
    static func with<T: Sendable>(secret: String, _ body: @Sendable (BusinessReceiver) async throws -> T) async throws -> T {
        let box = Mutex<BusinessReceiver?>(nil)
        let router = Router()
        router.post("/events") { request, _ -> Response in
            let data = try await request.body.collect(upTo: 1 << 20)
            let text = String(buffer: data)
            guard let receiver = box.withLock({ $0 }) else { return Response(status: .serviceUnavailable) }
            return receiver.receive(
                text,
                signature: request.headers[HTTPField.Name("Ferry-Signature")!] ?? "",
                count: request.headers[HTTPField.Name("Ferry-Event-Count")!]
            )
        }
        router.post("/pre-finish") { request, _ -> Response in
            let data = try await request.body.collect(upTo: 1 << 20)
            guard let receiver = box.withLock({ $0 }) else { return Response(status: .serviceUnavailable) }
            let fails = receiver.state.withLock { state in
                state.preFinishCalls += 1
                return state.preFinishFails
            }
            if fails { return Response(status: .internalServerError) }
            let json = try JSONSerialization.jsonObject(with: Data(buffer: data)) as? [String: Any]
            let upload = json?["upload"] as? [String: Any]
            let id = upload?["id"] as? String ?? "?"
            let answer = #"{"businessId": "biz-\#(id)", "sha256": "\#(upload?["sha256"] as? String ?? "")", "note": "é"}"#
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: answer)))
        }
        router.post("/pre-create") { request, _ -> Response in
            let data = try await request.body.collect(upTo: 1 << 20)
            let json = try JSONSerialization.jsonObject(with: Data(buffer: data)) as? [String: Any]
            let metadata = json?["metadata"] as? [String: String] ?? [:]
            let answer = metadata["block"] == "yes"
                ? #"{"reject": {"status": 403, "message": "blocked by policy"}}"#
                : #"{"metadata": {"tenant": "t1"}}"#
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: answer)))
        }
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        var logger = Logger(label: "receiver")
        logger.logLevel = .error
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                continuation.yield(channel.localAddress?.port ?? 0)
                continuation.finish()
            },
            logger: logger
        )
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService(gracefulShutdownSignals: []) }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            let receiver = BusinessReceiver(secret: secret, port: port)
            box.withLock { $0 = receiver }
            defer { group.cancelAll() }
            return try await body(receiver)
        }
    }

    /// One delivery: an event object, or (a batch) an array of them, refused as a whole while
    /// one of them has been attempted fewer than `failFirst` times.
    func receive(_ body: String, signature: String, count: String?) -> Response {
        let json = try? JSONSerialization.jsonObject(with: Data(body.utf8))
        let batch = json as? [[String: Any]]
        let objects = batch ?? [json as? [String: Any] ?? [:]]
        let parts = Dictionary(signature.split(separator: ",").compactMap { pair -> (String, String)? in
            let kv = pair.split(separator: "=", maxSplits: 1)
            return kv.count == 2 ? (String(kv[0]), String(kv[1])) : nil
        }, uniquingKeysWith: { $1 })
        let expected = HMAC<SHA256>.authenticationCode(for: Data("\(parts["t"] ?? "").\(body)".utf8), using: SymmetricKey(data: Data(secret.utf8)))
            .map { String(format: "%02x", $0) }.joined()
        return state.withLock { state in
            state.postSizes.append(objects.count)
            if (batch == nil && count != nil) || (batch != nil && count != String(objects.count)) { state.badCounts += 1 }
            var refuse = false
            for object in objects {
                let id = object["id"] as? String ?? ""
                state.attempts[id, default: 0] += 1
                if state.attempts[id, default: 0] <= state.failFirst { refuse = true }
            }
            if refuse { return Response(status: .internalServerError) }
            for object in objects {
                let upload = (object["upload"] as? [String: Any])?["id"] as? String ?? ""
                state.events.append(
                    Event(
                        id: object["id"] as? String ?? "", type: object["type"] as? String ?? "", sequence: object["sequence"] as? Int ?? 0,
                        upload: upload, signatureValid: expected == parts["v1"]
                    )
                )
            }
            return Response(status: .noContent)
        }
    }

    /// Waits until `condition` holds on the state (polling), up to `limit`.
    func wait(upTo limit: Duration = .seconds(30), _ condition: (State) -> Bool) async throws -> State {
        let clock = ContinuousClock()
        let start = clock.now
        while true {
            let snapshot = state.withLock { $0 }
            if condition(snapshot) || clock.now - start > limit { return snapshot }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
