import FerryCore
import FerryTus
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `POST /telemetry/<id>`: a client's report on an upload (a JSON object of at most 4 KiB, e.g.
/// `{"stalls": 2, "retries": 3, "chunkSizes": {...}}`), kept with its statistics. Authorized like
/// any request on the upload. OPTIONS on the upload collection advertises the path in
/// `Ferry-Telemetry` when the server keeps statistics.
enum TelemetryRoute {
    static let advertisement = HTTPField.Name("Ferry-Telemetry")!

    static func receive(_ request: Request, _ context: FerryRequestContext, dialect: TusDialect) async -> Response {
        do {
            guard let raw = context.parameters.get("id"), let id = UploadID(raw) else {
                throw FerryError(.uploadNotFound, "no upload has this URL")
            }
            let principal = try await dialect.authenticator.authenticate(authorization: request.headers[.authorization])
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: UploadEngine.maxTelemetry)
            } catch {
                throw FerryError(.invalidMetadata, "a telemetry report is at most \(UploadEngine.maxTelemetry) bytes of JSON")
            }
            let data = Data(buffer: body)
            guard (try? JSONSerialization.jsonObject(with: data)) is [String: Any] else {
                throw FerryError(.invalidMetadata, "a telemetry report is a JSON object")
            }
            try await dialect.engine.recordTelemetry(id, json: String(decoding: data, as: UTF8.self), as: principal)
            return Response(status: .noContent)
        } catch {
            let failure = error as? FerryError ?? FerryError(.internalError, "\(error)")
            var headers: HTTPFields = [.contentType: "text/plain; charset=utf-8", .ferryError: failure.code.rawValue]
            if failure.code == .unauthorized { headers[.wwwAuthenticate] = #"Bearer realm="ferry""# }
            return Response(
                status: failure.code.status, headers: headers,
                body: ResponseBody(byteBuffer: ByteBuffer(string: "\(failure.code.rawValue): \(failure.message)\n"))
            )
        }
    }
}
