import Foundation

extension UploadEngine {
    /// The largest telemetry report kept.
    public static let maxTelemetry = 4096

    /// Keeps what a client reports about an upload (stalls, retries, request sizes; a JSON
    /// object) with its statistics. Only the upload's owner (or anyone holding an anonymous
    /// upload's URL) may report.
    public func recordTelemetry(_ id: UploadID, json: String, as principal: Principal = .anonymous) async throws(FerryError) {
        guard let statistics else { throw FerryError(.notFound, "this server keeps no statistics") }
        guard json.utf8.count <= Self.maxTelemetry else {
            throw FerryError(.invalidMetadata, "a telemetry report is at most \(Self.maxTelemetry) bytes of JSON")
        }
        guard let record = try await catalog.get(id), record.state != .lost else {
            throw FerryError(.uploadNotFound, "no upload has this URL")
        }
        try authorize(record, principal)
        statistics.telemetry(id, json: json)
    }
}
