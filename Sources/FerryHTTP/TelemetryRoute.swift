import FerryCore
import FerryProtocol
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `POST /telemetry/<id>`: a client's report on an upload (a JSON object of at most 4 KiB, e.g.
/// `{"stalls": 2, "retries": 3, "chunkSizes": {...}}`), kept with its statistics. Authorized like
/// any request on the upload. OPTIONS on the upload collection advertises the path in
/// `Ferry-Telemetry` when the server keeps statistics.
enum TelemetryRoute {
    static func receive(_ request: Request, _ context: FerryRequestContext, endpoints: UploadEndpoints) async -> Response {
        do {
            guard let raw = context.parameters.get("id"), let id = UploadID(raw) else {
                throw FerryError(.uploadNotFound, "no upload has this URL")
            }
            let principal = try await endpoints.authenticator.authenticate(authorization: request.headers[.authorization])
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: StatsRecorder.maxTelemetry)
            } catch {
                throw FerryError(.invalidMetadata, "a telemetry report is at most \(StatsRecorder.maxTelemetry) bytes of JSON")
            }
            let data = Data(buffer: body)
            guard (try? JSONSerialization.jsonObject(with: data)) is [String: Any] else {
                throw FerryError(.invalidMetadata, "a telemetry report is a JSON object")
            }
            guard let statistics = endpoints.statistics else { throw FerryError(.notFound, "this server keeps no statistics") }
            _ = try await endpoints.engine.authorizedRecord(id, as: principal)
            try statistics.telemetry(id, report: String(decoding: data, as: UTF8.self))
            return Response(status: .noContent)
        } catch {
            let answer = ErrorRendering.text(error as? FerryError ?? FerryError(.internalError, "\(error)"))
            return Response(status: answer.status, headers: answer.headers, body: ResponseBody(byteBuffer: ByteBuffer(string: answer.text)))
        }
    }
}
