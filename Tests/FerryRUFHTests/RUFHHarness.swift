import FerryCore
import FerryProtocol
import FerryRUFH
import FerryTestSupport
import FerryTus
import HTTPTypes
import Testing

let hello = Array("hello".utf8)
let tus = ("Tus-Resumable", "1.0.0")
let octets = ("Content-Type", "application/offset+octet-stream")

/// One answer as the tables read it: a status, fields by name, the body.
struct Reply: Sendable {
    var status: Int
    var fields: HTTPFields
    var body: [UInt8]

    func header(_ name: String) -> String? { HTTPField.Name(name).flatMap { fields[$0] } }
    var text: String { String(decoding: body, as: UTF8.self) }
    var headers: String { fields.map { "\($0.name): \($0.value)" }.joined(separator: ", ") }
}

/// RUFH and tus over the engine on in-memory seams, as a server would choose between them.
struct RUFHHarness {
    let harness: DialectHarness

    static func with(maxSize: Int64? = nil, _ body: (RUFHHarness) async throws -> Void) async throws {
        let engine = DialectHarness.memoryEngine { if let maxSize { $0.maxSize = maxSize } }
        let harness = DialectHarness(engine: engine) { routes, capabilities in
            [RUFHDialect(routes: routes, capabilities: capabilities), TusDialect(routes: routes, capabilities: capabilities)]
        }
        try await body(RUFHHarness(harness: harness))
    }

    /// Every answer to one request, the informational ones first.
    func responses(_ method: String, _ path: String, _ fields: [(String, String)], body: [UInt8] = []) async -> [Reply] {
        let answer = await harness.send(HTTPRequest.Method(method)!, path, fields, body: body)
        return answer.interims.map { Reply(status: $0.status.code, fields: $0.headerFields, body: []) }
            + [Reply(status: answer.status, fields: answer.response.headers, body: answer.body)]
    }

    /// The final answer to one request.
    func send(_ method: String, _ path: String, _ fields: [(String, String)], body: [UInt8] = []) async -> Reply {
        await responses(method, path, fields, body: body).last!
    }

    /// A tus creation; the new upload's path.
    func create(length: Int) async throws -> String {
        let reply = await send("POST", "/files/", [tus, ("Upload-Length", String(length))])
        let location = try #require(reply.header("Location"))
        return String(location[try #require(location.range(of: "/files/")).lowerBound...])
    }
}
