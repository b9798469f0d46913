@testable import FerryClient
import Foundation
import HTTPTypes
import Synchronization

/// A tus server in memory, as an `UploadTransport`: creation (with upload), appends, HEAD,
/// termination. Requests of the methods in `holding` wait until the test releases them, so a
/// test can see which uploads run at once and in what order, without timing.
final class FakeTusServer: UploadTransport {
    struct Upload {
        var name: String
        var length: Int64
        var offset: Int64
    }

    struct Entry: Equatable {
        var method: HTTPRequest.Method
        /// The `filename` metadata of the upload the request is about (nil for OPTIONS).
        var name: String?
        /// The body's range in the file.
        var range: Range<Int64>?
    }

    struct Held {
        var key: Int
        var name: String?
        var continuation: CheckedContinuation<Void, any Error>
    }

    struct State {
        var uploads: [String: Upload] = [:]
        var nextID = 0
        var log: [Entry] = []
        var holding: Set<HTTPRequest.Method> = []
        var held: [Held] = []
        var nextKey = 0
        /// Held requests now, and the most since `resetMaximum()`.
        var maximumHeld = 0
        var version: HTTPProtocolVersion?
        /// Files whose creation is refused with 403.
        var refused: Set<String> = []
    }

    let state = Mutex(State())
    let signal = ChangeSignal()
    let extensions = "creation,creation-with-upload,creation-defer-length,termination"

    init(holding: Set<HTTPRequest.Method> = [], version: HTTPProtocolVersion? = nil) {
        state.withLock {
            $0.holding = holding
            $0.version = version
        }
    }

    // MARK: What tests ask

    var log: [Entry] { state.withLock { $0.log } }
    var heldNames: [String?] { state.withLock { $0.held.map(\.name) } }
    var maximumHeld: Int { state.withLock { $0.maximumHeld } }

    func hold(_ methods: Set<HTTPRequest.Method>) {
        change { $0.holding = methods }
    }

    func refuse(_ name: String) {
        change { $0.refused.insert(name) }
    }

    func resetMaximum() {
        change { $0.maximumHeld = $0.held.count }
    }

    /// Returns once `condition` holds.
    func wait(until condition: (State) -> Bool) async {
        while true {
            let generation = signal.generation
            if state.withLock({ condition($0) }) { return }
            await signal.changed(after: generation)
        }
    }

    /// Lets the oldest held request (or the one for `name`) go on.
    func release(_ name: String? = nil) {
        let held = state.withLock { state -> Held? in
            guard let position = state.held.firstIndex(where: { name == nil || $0.name == name }) else { return nil }
            return state.held.remove(at: position)
        }
        held?.continuation.resume()
        signal.bump()
    }

    /// Holds nothing more, and lets every held request go on.
    func releaseAll() {
        let held = state.withLock { state -> [Held] in
            state.holding = []
            defer { state.held = [] }
            return state.held
        }
        for request in held { request.continuation.resume() }
        signal.bump()
    }

    // MARK: The server

    func send(_ request: TransportRequest, progress: @escaping @Sendable (Int64) -> Void) async throws -> TransportResponse {
        let name = state.withLock { state -> String? in
            let name = request.method == .post ? Self.filename(request) : state.uploads[request.url.path]?.name
            state.log.append(Entry(method: request.method, name: name, range: Self.range(request.body)))
            return name
        }
        signal.bump()
        if state.withLock({ $0.holding.contains(request.method) }) {
            try await waitForRelease(name)
        }
        progress(request.body?.count ?? 0)
        let (response, changed) = state.withLock { state in answer(request, name: name, &state) }
        if changed { signal.bump() }
        return response
    }

    private func waitForRelease(_ name: String?) async throws {
        let key = state.withLock { state -> Int in
            state.nextKey += 1
            return state.nextKey
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let cancelled = state.withLock { state -> Bool in
                    if Task.isCancelled { return true }
                    state.held.append(Held(key: key, name: name, continuation: continuation))
                    state.maximumHeld = max(state.maximumHeld, state.held.count)
                    return false
                }
                if cancelled { continuation.resume(throwing: CancellationError()) }
                signal.bump()
            }
        } onCancel: {
            let held = state.withLock { state -> Held? in
                guard let position = state.held.firstIndex(where: { $0.key == key }) else { return nil }
                return state.held.remove(at: position)
            }
            held?.continuation.resume(throwing: CancellationError())
            signal.bump()
        }
    }

    private func answer(_ request: TransportRequest, name: String?, _ state: inout State) -> (TransportResponse, Bool) {
        let version = state.version
        func respond(_ status: HTTPResponse.Status, _ fields: HTTPFields = [:]) -> TransportResponse {
            TransportResponse(status: status, headerFields: fields, httpVersion: version)
        }
        let body = request.body?.count ?? 0
        switch request.method {
        case .options:
            return (respond(.noContent, [.tusExtension: extensions, .tusResumable: "1.0.0"]), false)
        case .post:
            if let name, state.refused.contains(name) { return (respond(.forbidden, [.ferryError: "ERR_FORBIDDEN"]), true) }
            state.nextID += 1
            let path = "/files/\(state.nextID)"
            let length = request.headerFields[.uploadLength].flatMap { Int64($0) } ?? 0
            state.uploads[path] = Upload(name: name ?? "", length: length, offset: body)
            return (respond(.created, [.location: path, .uploadOffset: String(body)]), true)
        case .head:
            guard let upload = state.uploads[request.url.path] else { return (respond(.notFound), false) }
            return (respond(.ok, [.uploadOffset: String(upload.offset), .uploadLength: String(upload.length)]), false)
        case .patch:
            guard var upload = state.uploads[request.url.path] else { return (respond(.notFound), false) }
            guard request.headerFields[.uploadOffset] == String(upload.offset) else { return (respond(.conflict), false) }
            upload.offset += body
            state.uploads[request.url.path] = upload
            return (respond(.noContent, [.uploadOffset: String(upload.offset)]), true)
        case .delete:
            state.uploads[request.url.path] = nil
            return (respond(.noContent), true)
        default:
            return (respond(.methodNotAllowed), false)
        }
    }

    private func change(_ body: (inout State) -> Void) {
        state.withLock { body(&$0) }
        signal.bump()
    }

    static func filename(_ request: TransportRequest) -> String? {
        for pair in (request.headerFields[.uploadMetadata] ?? "").split(separator: ",") {
            let parts = pair.split(separator: " ")
            if parts.count == 2, parts[0] == "filename", let data = Data(base64Encoded: String(parts[1])) {
                return String(decoding: data, as: UTF8.self)
            }
        }
        return nil
    }

    static func range(_ body: RequestBody?) -> Range<Int64>? {
        if case .file(_, let range) = body { return range }
        return nil
    }
}
