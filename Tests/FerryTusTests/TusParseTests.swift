import FerryCore
import FerryProtocol
import FerryTus
import Foundation
import HTTPTypes
import Testing

/// `TusDialect.parse` alone: a request head in, the exact command (or error code) out.
@Suite("tus: parse")
struct TusParseTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var method: HTTPRequest.Method
        var path: String
        var fields: [(String, String)]
        var expected: Expected
        var testDescription: String { name }
    }

    enum Expected: Equatable, Sendable {
        case success(UploadCommand)
        case failure(FerryError.Code)
    }

    static let id = UploadID("0123456789abcdef0123456789abcdef")!
    static let upload = "/files/0123456789abcdef0123456789abcdef"

    static let rows: [Row] = [
        Row(name: "OPTIONS needs no version", method: .options, path: "/files/", fields: [], expected: .success(.options(scenario: nil))),
        Row(name: "HEAD is a status", method: .head, path: upload, fields: [tus], expected: .success(.status(id))),
        Row(name: "HEAD without Tus-Resumable", method: .head, path: upload, fields: [], expected: .failure(.unsupportedVersion)),
        Row(name: "DELETE terminates", method: .delete, path: upload, fields: [tus], expected: .success(.terminate(id))),
        Row(name: "GET reads, refusing incomplete uploads", method: .get, path: upload, fields: [("Range", "bytes=2-")],
            expected: .success(.read(id, .from(2, through: nil), otherwise: .refuse))),
        Row(name: "PATCH appends", method: .patch, path: upload, fields: [tus, octets, ("Upload-Offset", "7"), ("Content-Length", "3")],
            expected: .success(.append(id, AppendRequest(offset: 7, contentLength: 3)))),
        Row(name: "POST overridden to PATCH", method: .post, path: upload, fields: [tus, octets, ("Upload-Offset", "0"), ("X-HTTP-Method-Override", "PATCH")],
            expected: .success(.append(id, AppendRequest(offset: 0)))),
        Row(name: "GET is never overridden", method: .get, path: upload, fields: [("X-HTTP-Method-Override", "DELETE")],
            expected: .success(.read(id, .whole, otherwise: .refuse))),
        Row(name: "PATCH with a sign", method: .patch, path: upload, fields: [tus, octets, ("Upload-Offset", "+1")], expected: .failure(.invalidOffset)),
        Row(name: "PATCH of another type", method: .patch, path: upload, fields: [tus, ("Upload-Offset", "0")], expected: .failure(.invalidContentType)),
        Row(name: "a deferred creation", method: .post, path: "/files/", fields: [tus, ("Upload-Defer-Length", "1")],
            expected: .success(.create(.init(spec: .init(length: nil, info: RequestInfo(dialect: "tus"), address: nil))))),
        Row(name: "both lengths", method: .post, path: "/files/", fields: [tus, ("Upload-Length", "1"), ("Upload-Defer-Length", "1")],
            expected: .failure(.lengthRequired)),
        Row(name: "a final names its parts", method: .post, path: "/files/", fields: [tus, ("Upload-Concat", "final;\(upload) http://127.0.0.1\(upload)")],
            expected: .success(.concatenate(.init(parts: [id, id], request: "final;\(upload) http://127.0.0.1\(upload)", info: RequestInfo(dialect: "tus"))))),
        Row(name: "a final naming another server", method: .post, path: "/files/", fields: [tus, ("Upload-Concat", "final;http://elsewhere\(upload)")],
            expected: .failure(.invalidConcat)),
        Row(name: "an unknown scenario", method: .post, path: "/files/nope/", fields: [tus, ("Upload-Length", "1")], expected: .failure(.scenarioNotFound)),
        Row(name: "a path that is no upload", method: .head, path: "/files/../x", fields: [tus], expected: .failure(.uploadNotFound)),
    ]

    @Test(arguments: rows)
    func row(_ row: Row) {
        let dialect = TusDialect(routes: UploadRoutes(), capabilities: capabilities)
        var request = HTTPRequest(method: row.method, scheme: "http", authority: "127.0.0.1", path: row.path)
        for (name, value) in row.fields { request.headerFields.append(HTTPField(name: HTTPField.Name(name)!, value: value)) }
        let result: Expected
        do {
            result = .success(try dialect.parse(request, dialect.context(of: request)))
        } catch {
            result = .failure(error.code)
        }
        #expect(result == row.expected)
    }
}

let capabilities = EngineCapabilities(concatenation: true, content: true, expiration: true, termination: true, maxSize: 1000, expiry: .seconds(60))
