import FerryCore
import FerryTus
import HTTPTypes
import NIOCore

extension RUFHDialect {
    /// Upload creation: POST/PUT/PATCH on the collection with `Upload-Complete`. The upload
    /// exists before the body is read, and `104 Upload Resumption Supported` tells the client
    /// its URL then, so a creation cut mid-body resumes at the stored offset.
    func create<Body: AsyncSequence & Sendable>(
        _ request: HTTPRequest,
        _ form: RUFHForm,
        scenario: String?,
        principal: Principal,
        body: Body,
        transport: some BodyTransport & InterimResponder
    ) async throws(FerryError) -> TusResponse where Body.Element == ByteBuffer {
        let fields = request.headerFields
        guard let complete = try form.complete(fields) else {
            throw FerryError(.invalidLength, "a creation carries \(form.usesIncomplete ? "Upload-Incomplete" : "Upload-Complete")")
        }
        if let offset = fields[.rufhUploadOffset], try StructuredField.integer(offset, "Upload-Offset", .invalidOffset) != 0 {
            throw FerryError(.invalidOffset, "a creation starts at offset 0")
        }
        let contentLength = fields[.contentLength].flatMap { Int64($0) }
        let uploadLength = try fields[.rufhUploadLength].map { text throws(FerryError) in
            try StructuredField.integer(text, "Upload-Length", .invalidLength)
        }
        var length = uploadLength
        if complete, let contentLength {
            if let uploadLength, uploadLength != contentLength {
                throw FerryError(.inconsistentLength, "Upload-Length \(uploadLength) but the complete body is \(contentLength) bytes")
            }
            length = contentLength
        } else if let uploadLength, let contentLength, contentLength > uploadLength {
            throw FerryError(.inconsistentLength, "the body (\(contentLength) bytes) is longer than Upload-Length \(uploadLength)")
        }
        let digests = try Digests(fields)
        let metadata = try metadata(fields)
        var record = try await engine.create(
            .init(
                length: length, metadata: metadata, scenario: scenario, principal: principal,
                info: TusDialect.requestInfo(request, dialect: "rufh", metadata: metadata),
                address: tus.clientAddress(request, transport)
            )
        )
        let location = tus.url(of: record.id, request)
        var interim = HTTPResponse(status: .init(code: 104, reasonPhrase: "Upload Resumption Supported"))
        interim.headerFields[.location] = location
        form.echo(in: &interim.headerFields)
        if form.announcesLimits { interim.headerFields[.uploadLimit] = limits(of: record, form) }

        let hasBody = (contentLength ?? 0) > 0 || fields[.transferEncoding] != nil
        if hasBody || (complete && !record.isComplete) {
            let append = AppendRequest(
                offset: 0,
                contentLength: contentLength,
                checksum: digests.content,
                completesUpload: complete,
                wantsDigest: digests.wantsRepresentation,
                expectedSHA256: digests.representation,
                method: request.method.rawValue
            )
            do {
                let interimTransport = InterimTransport(inner: transport, interim: interim, progress: form.sendsProgress ? form : nil)
                record = try await engine.append(record.id, append, body: body, transport: interimTransport, as: principal)
            } catch {
                var response = try await failedAppend(error, record.id, form, principal, request)
                response.headers[.location] = location
                return response
            }
        } else {
            await transport.sendInterim(interim)
        }
        var response = record.isComplete ? completed(record, location: location, request) : TusResponse(status: .created)
        response.status = .created
        response.headers[.location] = location
        describe(record, form, request, into: &response.headers)
        return response
    }

    /// Offset retrieval (HEAD, or GET without a body): where the upload stands.
    func offset(_ id: UploadID, _ request: HTTPRequest, _ form: RUFHForm, _ principal: Principal) async throws(FerryError) -> TusResponse {
        let record = try await engine.status(id, as: principal)
        var response = TusResponse(status: .noContent)
        response.headers[.cacheControl] = "no-store"
        describe(record, form, request, into: &response.headers)
        return response
    }

    /// Append: PATCH at `Upload-Offset`; the newest request on an upload wins, as for tus.
    func append<Body: AsyncSequence & Sendable>(
        _ id: UploadID,
        _ request: HTTPRequest,
        _ form: RUFHForm,
        _ principal: Principal,
        body: Body,
        transport: some BodyTransport & InterimResponder
    ) async throws(FerryError) -> TusResponse where Body.Element == ByteBuffer {
        let fields = request.headerFields
        if form.requiresPartialUploadType, Self.mediaType(fields[.contentType]) != Self.partialUploadType {
            throw FerryError(.invalidContentType, "appends are sent as \(Self.partialUploadType)")
        }
        guard let offsetText = fields[.rufhUploadOffset] else {
            throw FerryError(.invalidOffset, "an append carries Upload-Offset")
        }
        let offset = try StructuredField.integer(offsetText, "Upload-Offset", .invalidOffset)
        guard let complete = try form.complete(fields) else {
            throw FerryError(.invalidLength, "an append carries \(form.usesIncomplete ? "Upload-Incomplete" : "Upload-Complete")")
        }
        let contentLength = fields[.contentLength].flatMap { Int64($0) }
        let uploadLength = try fields[.rufhUploadLength].map { text throws(FerryError) in
            try StructuredField.integer(text, "Upload-Length", .invalidLength)
        }
        var declared = uploadLength
        if complete, let contentLength {
            let total = try offset.adding(contentLength, or: .invalidLength, "Upload-Offset plus Content-Length does not fit in 63 bits")
            if let uploadLength, uploadLength != total {
                throw FerryError(.inconsistentLength, "Upload-Length \(uploadLength) but this complete append ends at \(total)")
            }
            declared = total
        }
        let digests = try Digests(fields)
        let append = AppendRequest(
            offset: offset,
            contentLength: contentLength,
            declaredLength: declared,
            checksum: digests.content,
            completesUpload: complete,
            refusesComplete: true,
            wantsDigest: digests.wantsRepresentation,
            expectedSHA256: digests.representation
        )
        let record: UploadRecord
        do {
            let interimTransport = InterimTransport(inner: transport, interim: nil, progress: form.sendsProgress ? form : nil)
            record = try await engine.append(id, append, body: body, transport: interimTransport, as: principal)
        } catch {
            return try await failedAppend(error, id, form, principal, request, provided: offset)
        }
        if record.isComplete {
            var response = completed(record, location: tus.url(of: record.id, request), request)
            describe(record, form, request, into: &response.headers)
            return response
        }
        var response = TusResponse(status: .noContent)
        describe(record, form, request, into: &response.headers)
        return response
    }

    /// The answer to an append that failed: a 409 names the offset to resume from; a body
    /// that overran the upload's length invalidates the upload (the draft's rule).
    func failedAppend(
        _ error: FerryError,
        _ id: UploadID,
        _ form: RUFHForm,
        _ principal: Principal,
        _ request: HTTPRequest,
        provided: Int64? = nil
    ) async throws(FerryError) -> TusResponse {
        switch error.code {
        case .offsetMismatch:
            let record = try await engine.status(id, as: principal)
            var response = problem(error, form: form, method: request.method, extra: [("expected-offset", record.offset), ("provided-offset", provided ?? 0)])
            response.headers[.rufhUploadOffset] = String(record.offset)
            form.setComplete(record.isComplete, in: &response.headers)
            return response
        case .lengthExceeded:
            try? await engine.terminate(id, as: principal)
            return problem(FerryError(.inconsistentLength, "the body ran past the upload's length; the upload is invalidated"), form: form, method: request.method)
        default:
            return problem(error, form: form, method: request.method)
        }
    }

    /// The final response of a completed upload: its id, size and business result as JSON,
    /// so an app gets its business id in the same round trip, whichever request completed it.
    func completed(_ record: UploadRecord, location: String, _ request: HTTPRequest) -> TusResponse {
        var writer = JSONWriter()
        writer.string("id", record.id.rawValue)
        writer.string("location", location)
        writer.number("length", record.offset)
        writer.string("sha256", record.sha256)
        if let business = record.business {
            writer.string("businessStatus", business.status.rawValue)
            if business.status == .done, let json = business.json { writer.raw("business", json) }
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        headers[.cacheControl] = "no-store"
        return TusResponse(status: .ok, headers: headers, body: .text(writer.finish()))
    }

    /// Metadata from ordinary headers: `Content-Type` as `filetype`, the `Content-Disposition`
    /// file name as `filename`.
    func metadata(_ fields: HTTPFields) throws(FerryError) -> UploadMetadata {
        var metadata = UploadMetadata()
        if let type = Self.mediaType(fields[.contentType]), !type.isEmpty, type != Self.partialUploadType, type != "application/octet-stream" {
            try metadata.set("filetype", type)
        }
        if let disposition = fields[.contentDisposition], let name = Self.filename(disposition) {
            try metadata.set("filename", name)
        }
        return metadata
    }

    /// `filename*=UTF-8''…` (RFC 6266/8187) or `filename="…"` of a `Content-Disposition`.
    static func filename(_ disposition: String) -> String? {
        var plain: String?
        for part in disposition.split(separator: ";").dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { continue }
            switch pair[0].lowercased() {
            case "filename*":
                let value = pair[1]
                guard let quote = value.range(of: "''") else { continue }
                let charset = value[..<quote.lowerBound].lowercased()
                if charset == "utf-8", let decoded = String(value[quote.upperBound...]).removingPercentEncoding, !decoded.isEmpty {
                    return decoded
                }
            case "filename":
                var value = pair[1]
                if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
                if !value.isEmpty { plain = value.replacingOccurrences(of: "\\\"", with: "\"") }
            default:
                continue
            }
        }
        return plain
    }
}

/// RFC 9530 digests of one request: `Content-Digest` (this body), `Repr-Digest` (the whole
/// upload, checked when this request completes it) and `Want-Repr-Digest`.
struct Digests {
    var content: ChecksumExpectation?
    var representation: [UInt8]?
    var wantsRepresentation = false

    init(_ fields: HTTPFields) throws(FerryError) {
        if let text = fields[.contentDigest] {
            content = DigestAlgorithm.checksum(from: try StructuredField.digests(text, "Content-Digest"))
        }
        if let text = fields[.reprDigest] {
            representation = try StructuredField.digests(text, "Repr-Digest")["sha-256"]
        }
        if let text = fields[.wantReprDigest], let wanted = StructuredField.wanted(text) {
            wantsRepresentation = wanted.contains("sha-256")
        }
    }
}

/// Sends the creation's `104` just before the engine reads the body (after every check), and
/// (`progress`) a `104` with `Upload-Offset` — never `Location` — after each durable checkpoint
/// of a long append.
struct InterimTransport<Inner: BodyTransport & InterimResponder>: BodyTransport {
    let inner: Inner
    let interim: HTTPResponse?
    let progress: RUFHForm?

    func willReadBody() async {
        if let interim { await inner.sendInterim(interim) }
        await inner.willReadBody()
    }

    func bodyEnded() async -> BodyEnd { await inner.bodyEnded() }

    var clientAddress: String? { inner.clientAddress }

    func checkpointed(offset: Int64) async {
        guard let progress else { return }
        var response = HTTPResponse(status: .init(code: 104, reasonPhrase: "Upload Resumption Supported"))
        response.headerFields[.rufhUploadOffset] = String(offset)
        progress.echo(in: &response.headerFields)
        await inner.sendInterim(response)
    }
}
