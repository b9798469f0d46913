import FerryCore
import HTTPTypes
import NIOCore

extension TusDialect {
    /// POST on the collection: `creation`, `creation-with-upload`, `creation-defer-length`,
    /// and the `concatenation` partial and final forms.
    func create<Body: AsyncSequence & Sendable>(
        _ request: HTTPRequest,
        _ headers: TusHeaders,
        scenario: String?,
        principal: Principal,
        body: Body,
        transport: some BodyTransport
    ) async throws(FerryError) -> TusResponse where Body.Element == ByteBuffer {
        let metadata = try headers.metadata
        var isPartial = false
        if let concat = request.headerFields[.uploadConcat] {
            if concat == "partial" {
                isPartial = true
            } else if concat.hasPrefix("final;") {
                return try await createFinal(
                    request, headers, concat.dropFirst("final;".count), metadata, scenario, principal, address: clientAddress(request, transport)
                )
            } else {
                throw FerryError(.invalidConcat, "Upload-Concat is `partial` or `final;<url> <url> ...`")
            }
        }
        let length = try headers.decimal(.uploadLength, .invalidLength)
        let deferLength = request.headerFields[.uploadDeferLength]
        if let deferLength, deferLength != "1" {
            throw FerryError(.invalidDeferLength, "Upload-Defer-Length must be 1")
        }
        guard (length == nil) != (deferLength == nil) else {
            throw FerryError(.lengthRequired, "send exactly one of Upload-Length and Upload-Defer-Length")
        }
        let withUpload = headers.isOffsetStream
        if headers.hasBody, !withUpload {
            throw FerryError(.invalidContentType, "a creation body must be sent as application/offset+octet-stream")
        }
        let checksum = try headers.checksum
        if let length, let contentLength = headers.contentLength, contentLength > length {
            throw FerryError(.lengthExceeded, "the body is longer than Upload-Length")
        }
        var record = try await engine.create(
            .init(
                length: length, metadata: metadata, isPartial: isPartial, scenario: scenario, principal: principal,
                info: Self.requestInfo(request, dialect: "tus", metadata: metadata),
                address: clientAddress(request, transport)
            )
        )
        var responseHeaders = HTTPFields()
        let location = url(of: record.id, request)
        responseHeaders[.location] = location
        if withUpload, headers.hasBody || headers.contentLength == 0 {
            let append = AppendRequest(
                offset: 0,
                contentLength: headers.contentLength,
                checksum: checksum,
                expectsTrailerChecksum: headers.announcesChecksumTrailer,
                method: "POST"
            )
            do {
                if headers.hasBody {
                    record = try await engine.append(record.id, append, body: body, transport: transport, as: principal)
                }
            } catch {
                var response = errorResponse(error, method: .post)
                response.headers[.location] = location
                return response
            }
            responseHeaders[.uploadOffset] = String(record.offset)
        }
        addExpiry(record, to: &responseHeaders)
        addBusinessResult(record, to: &responseHeaders)
        return TusResponse(status: .created, headers: responseHeaders)
    }

    private func createFinal(
        _ request: HTTPRequest,
        _ headers: TusHeaders,
        _ list: Substring,
        _ metadata: UploadMetadata,
        _ scenario: String?,
        _ principal: Principal,
        address: String?
    ) async throws(FerryError) -> TusResponse {
        guard engine.capabilities.concatenation else {
            throw FerryError(.invalidConcat, "this server does not concatenate uploads")
        }
        if request.headerFields[.uploadLength] != nil || request.headerFields[.uploadDeferLength] != nil {
            throw FerryError(.invalidConcat, "a final upload takes its length from its partials: omit Upload-Length")
        }
        if headers.hasBody {
            throw FerryError(.invalidConcat, "a final upload cannot carry a body")
        }
        var parts: [UploadID] = []
        for reference in list.split(separator: " ", omittingEmptySubsequences: true) {
            parts.append(try uploadID(fromReference: reference, request))
        }
        let record = try await engine.createFinal(parts: parts, metadata: metadata, scenario: scenario, principal: principal, address: address)
        var responseHeaders = HTTPFields()
        responseHeaders[.location] = url(of: record.id, request)
        addExpiry(record, to: &responseHeaders)
        addBusinessResult(record, to: &responseHeaders)
        return TusResponse(status: .created, headers: responseHeaders)
    }

    /// Who is creating an upload, for the statistics: the client kind from `User-Agent`, the
    /// network from `Ferry-Network` or the `network` metadata.
    public static func requestInfo(_ request: HTTPRequest, dialect: String, metadata: UploadMetadata) -> RequestInfo {
        RequestInfo(
            dialect: dialect,
            client: RequestInfo.client(declared: request.headerFields[.ferryClient], userAgent: request.headerFields[.userAgent]),
            network: RequestInfo.network(request.headerFields[.ferryNetwork] ?? metadata.string("network"))
        )
    }

    /// The client's address: the first `X-Forwarded-For` entry behind a trusted proxy, else the peer.
    public func clientAddress(_ request: HTTPRequest, _ transport: some BodyTransport) -> String? {
        if configuration.trustForwardedHeaders, let forwarded = request.headerFields[.xForwardedFor],
            let first = forwarded.split(separator: ",").first?.trimmingCharacters(in: .whitespaces), !first.isEmpty
        {
            return first
        }
        return transport.clientAddress
    }

    func addExpiry(_ record: UploadRecord, to headers: inout HTTPFields) {
        if !record.isComplete, let expiresAt = record.expiresAt {
            headers[.uploadExpires] = HTTPDate.format(expiresAt)
        }
    }
}
