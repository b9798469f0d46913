import Foundation

/// What a finished upload tells a Ferry server about itself (`POST /telemetry/<id>`, advertised
/// by `Ferry-Telemetry` on OPTIONS): stalls detected, retries, request sizes. Best effort: one
/// try, a few seconds at most, never an error for the upload.
struct Telemetry: Sendable {
    /// Where the server takes reports (its `Ferry-Telemetry`); nil: it takes none.
    var path: String?
    var stalls = 0
    var sizes: (count: Int, smallest: Int64, largest: Int64, last: Int64) = (0, .max, 0, 0)

    mutating func sent(_ bytes: Int64) {
        sizes = (sizes.count + 1, min(sizes.smallest, bytes), max(sizes.largest, bytes), bytes)
    }
}

extension UploadSession {
    func reportTelemetry(_ url: URL) async {
        // One report per file: not for the streams of a parallel upload, nor for one stored
        // instantly (the server recorded it as such; a report would add a round trip to it).
        guard upload.part == nil, upload.split == nil, !storedInstantly, let path = telemetry.path,
            let target = URL(string: path + url.lastPathComponent, relativeTo: upload.endpoint)?.absoluteURL
        else { return }
        let sizes = telemetry.sizes
        var fields = [
            "\"stalls\":\(telemetry.stalls)", "\"retries\":\(machine.failures)",
            "\"requests\":\(upload.counters.withLock { $0.requests })", "\"network\":\"\(upload.options.network.rawValue)\"",
            "\"dialect\":\"\(upload.options.dialect.rawValue)\"", "\"client\":\"\(Self.userAgent)\"",
        ]
        if sizes.count > 0 {
            fields.append("\"chunkSizes\":{\"count\":\(sizes.count),\"min\":\(sizes.smallest),\"max\":\(sizes.largest),\"last\":\(sizes.last)}")
        }
        let request = TransportRequest(
            method: .post, url: target,
            headerFields: [.contentType: "application/json", .userAgent: Self.userAgent] + upload.options.headers,
            body: .bytes(Array(("{" + fields.joined(separator: ",") + "}").utf8))
        )
        let runner = self.runner
        _ = await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = await runner.run(request, goodput: nil) }
            group.addTask { try? await Task.sleep(for: .seconds(3)) }
            await group.next()
            group.cancelAll()
        }
        trace("telemetry -> \(target.path)")
    }
}
