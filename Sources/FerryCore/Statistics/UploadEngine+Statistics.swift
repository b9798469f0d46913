import Foundation

extension UploadEngine {
    /// The record of an upload `principal` may report on or act on (its owner's, or anyone's
    /// holding an anonymous upload's URL), without taking its lock.
    public func authorizedRecord(_ id: UploadID, as principal: Principal = .anonymous) async throws(FerryError) -> UploadRecord {
        guard let record = try await catalog.get(id), record.state != .lost else {
            throw FerryError(.uploadNotFound, "no upload has this URL")
        }
        try authorize(record, principal)
        return record
    }
}

extension StatsRecorder {
    /// The largest telemetry report kept.
    public static let maxTelemetry = 4096

    /// Keeps what a client reports about an upload (stalls, retries, request sizes; a JSON
    /// object) with its statistics; the caller checked the client may report on it.
    public func telemetry(_ id: UploadID, report json: String) throws(FerryError) {
        guard json.utf8.count <= Self.maxTelemetry else {
            throw FerryError(.invalidMetadata, "a telemetry report is at most \(Self.maxTelemetry) bytes of JSON")
        }
        telemetry(id, json: json)
    }
}
