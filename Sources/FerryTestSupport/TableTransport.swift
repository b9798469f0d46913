import HTTPTypes

/// What a protocol table needs of a server: one request in, its final answer out. The same rows
/// run through `DialectHarness` (no sockets) and over real connections to a live server.
public protocol TableTransport: Sendable {
    /// Sends one request, `body` in one piece with its `Content-Length` (none when empty), and
    /// returns the final answer (informational ones are not reported).
    func send(_ method: String, _ path: String, _ fields: [(String, String)], body: [UInt8]) async throws -> TableAnswer
}

/// A final answer: status, fields, body.
public struct TableAnswer: Sendable {
    public var status: Int
    public var fields: HTTPFields
    public var body: [UInt8]

    public init(status: Int, fields: HTTPFields, body: [UInt8]) {
        self.status = status
        self.fields = fields
        self.body = body
    }

    /// The field's value (several lines joined by ", "), nil when absent.
    public func header(_ name: String) -> String? { HTTPField.Name(name).flatMap { fields[$0] } }
    public var text: String { String(decoding: body, as: UTF8.self) }
}

extension TableTransport {
    func send(_ method: String, _ path: String, _ fields: [(String, String)]) async throws -> TableAnswer {
        try await send(method, path, fields, body: [])
    }
}

extension DialectHarness: TableTransport {
    /// The harness as a table transport: the request never leaves the process.
    public func send(_ method: String, _ path: String, _ fields: [(String, String)], body: [UInt8]) async throws -> TableAnswer {
        guard let method = HTTPRequest.Method(method) else {
            throw ConformanceFailure(message: "\(method) is not a method", file: #fileID, line: #line)
        }
        let answer: Answer = await send(method, path, fields, body: body)
        return TableAnswer(status: answer.status, fields: answer.response.headers, body: answer.body)
    }
}
