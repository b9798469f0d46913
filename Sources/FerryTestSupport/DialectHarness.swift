import FerryCore
import FerryProtocol
import Foundation
import HTTPTypes
import Logging
import NIOCore
import Synchronization

/// Dialects and the engine over in-memory seams, answering requests without sockets: the
/// protocol tables of every dialect run here (request in, exact status and fields out).
public struct DialectHarness: Sendable {
    /// One request's answers: the informational ones in order, then the final one, and the
    /// bytes of a streamed body.
    public struct Answer: Sendable {
        public var interims: [HTTPResponse]
        public var response: UploadResponse
        public var body: [UInt8]

        public var status: Int { response.status.code }
        public func header(_ name: String) -> String? { HTTPField.Name(name).flatMap { response.headers[$0] } }
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public let engine: UploadEngine
    public let dispatcher: UploadDispatcher
    /// Asked in order whether a request is theirs; the last one answers the rest.
    public let dialects: [any UploadDialect]

    public init(engine: UploadEngine, dialects: (UploadRoutes, EngineCapabilities) -> [any UploadDialect], authenticator: any Authenticator = AnonymousAuthenticator()) {
        let routes = UploadRoutes(UploadRoutes.Configuration(), scenarios: engine.business.scenarios)
        self.engine = engine
        self.dispatcher = UploadDispatcher(engine: engine, authenticator: authenticator)
        self.dialects = dialects(routes, engine.capabilities)
    }

    /// An engine over `MemoryByteStore`, `MemoryCatalog` and `LocalUploadLocker`.
    public static func memoryEngine(configure: (inout EngineConfiguration) -> Void = { _ in }, business: BusinessRules = .open) -> UploadEngine {
        var configuration = EngineConfiguration()
        configuration.creationsPerMinutePerClient = nil
        configure(&configuration)
        return UploadEngine(
            store: MemoryByteStore(), catalog: MemoryCatalog(), locker: LocalUploadLocker(), configuration: configuration,
            business: business, logger: Logger(label: "ferry.harness")
        )
    }

    /// Sends one request (`body` in one piece, with its `Content-Length` unless the fields say
    /// how it is framed) and collects every answer.
    public func send(_ method: HTTPRequest.Method, _ path: String, _ fields: [(String, String)] = [], body: [UInt8] = []) async -> Answer {
        var request = HTTPRequest(method: method, scheme: "http", authority: "127.0.0.1", path: path)
        for (name, value) in fields {
            if let name = HTTPField.Name(name) { request.headerFields.append(HTTPField(name: name, value: value)) }
        }
        if !body.isEmpty, request.headerFields[.contentLength] == nil, request.headerFields[.transferEncoding] == nil {
            request.headerFields[.contentLength] = String(body.count)
        }
        let transport = RecordingTransport()
        let chunks = AsyncStream<ByteBuffer> { continuation in
            if !body.isEmpty { continuation.yield(ByteBuffer(bytes: body)) }
            continuation.finish()
        }
        let dialect = dialects.first { $0.claims(request) } ?? dialects[dialects.count - 1]
        let response = await respond(request, dialect, chunks, transport)
        var bytes: [UInt8] = []
        switch response.body {
        case .empty: break
        case .text(let text): bytes = Array(text.utf8)
        case .content(let record, let range):
            try? await engine.read(record, range: range) { buffer in bytes += buffer.readableBytesView }
        }
        return Answer(interims: transport.interims.withLock { $0 }, response: response, body: bytes)
    }

    private func respond(_ request: HTTPRequest, _ dialect: some UploadDialect, _ body: AsyncStream<ByteBuffer>, _ transport: RecordingTransport) async -> UploadResponse {
        await dispatcher.respond(to: request, in: dialect, body: body, transport: transport)
    }
}

/// A transport whose bodies always end properly, recording the informational responses.
final class RecordingTransport: BodyTransport, InterimResponder {
    let interims = Mutex<[HTTPResponse]>([])

    func willReadBody() async {}
    func bodyEnded() async -> BodyEnd { BodyEnd(complete: true) }
    var clientAddress: String? { "127.0.0.1" }
    func sendInterim(_ response: HTTPResponse) async { interims.withLock { $0.append(response) } }
}
