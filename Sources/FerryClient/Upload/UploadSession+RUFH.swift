import Foundation

/// The requests of the RUFH dialect (IETF Resumable Uploads, interop version 8) for the
/// machine's actions; the tus ones are in `UploadSession`.
extension UploadSession {
    static let rufhInterop = "8"

    /// The fields every request carries: the dialect's, and for the server's statistics who
    /// the client is and the network it believes it is on (unless the caller set them).
    func dialectHeaders(tusVersion: Bool) -> [(String, String)] {
        var headers: [(String, String)]
        switch upload.options.dialect {
        case .tus: headers = tusVersion ? [("Tus-Resumable", "1.0.0")] : []
        case .rufh: headers = [("Upload-Draft-Interop-Version", Self.rufhInterop)]
        }
        let named = Set(upload.options.headers.map { $0.0.lowercased() })
        if !named.contains("user-agent") { headers.append(("User-Agent", Self.userAgent)) }
        if !named.contains("ferry-network"), upload.options.network != .unknown { headers.append(("Ferry-Network", upload.options.network.rawValue)) }
        return headers
    }

    static let userAgent = "ferry-client/1 (FerryClient)"

    /// What a RUFH server offers: creation with a body, deferred lengths, cancellation and
    /// `Content-Digest`, within the `max-size` of its `Upload-Limit`.
    func rufhCapabilities(_ response: TransportResponse) -> ServerCapabilities {
        var maxSize: Int64?
        for part in (response.header("upload-limit") ?? "").split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0] == "max-size" { maxSize = Int64(pair[1]) }
        }
        return ServerCapabilities(
            extensions: ["creation", "creation-with-upload", "creation-defer-length", "termination", "checksum"],
            checksumAlgorithms: ["sha256"],
            maxSize: maxSize
        )
    }

    /// `?1` when the request's body ends the upload.
    private func completeField(endingAt end: Int64, declared: Int64?) -> (String, String) {
        let ends = declared.map { end == $0 } ?? length.map { end == $0 } ?? false
        return ("Upload-Complete", ends ? "?1" : "?0")
    }

    /// Creation (POST) with the first chunk; the file's type and name as ordinary headers.
    func rufhCreation(_ firstChunk: Range<Int64>?) -> TransportRequest {
        var headers = dialectHeaders(tusVersion: true) + upload.options.headers
        headers.append(completeField(endingAt: firstChunk?.upperBound ?? 0, declared: nil))
        if let length { headers.append(("Upload-Length", String(length))) }
        let metadata = Dictionary(upload.options.metadata, uniquingKeysWith: { $1 })
        headers.append(("Content-Type", metadata["filetype"] ?? "application/octet-stream"))
        if let name = metadata["filename"] {
            let encoded = name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "file"
            headers.append(("Content-Disposition", "attachment; filename*=UTF-8''\(encoded)"))
        }
        var body: RequestBody?
        if let firstChunk {
            if let digest = digest(firstChunk) { headers.append(("Content-Digest", "sha-256=:\(digest):")) }
            body = .file(path: upload.path, range: fileRange(firstChunk))
        }
        return TransportRequest(method: "POST", url: upload.endpoint, headers: headers, body: body)
    }

    /// An append (PATCH, `application/partial-upload`); `declared` is the length a stream that
    /// ended declares with its last bytes.
    func rufhAppend(_ url: URL, _ range: Range<Int64>, declaring declared: Int64?) -> TransportRequest {
        var request = self.request("PATCH", url)
        request.headers += [
            ("Upload-Offset", String(range.lowerBound)),
            ("Content-Type", "application/partial-upload"),
            completeField(endingAt: range.upperBound, declared: declared),
        ]
        if let declared { request.headers.append(("Upload-Length", String(declared))) }
        if let digest = digest(range) { request.headers.append(("Content-Digest", "sha-256=:\(digest):")) }
        request.body = .file(path: upload.path, range: fileRange(range))
        return request
    }
}
