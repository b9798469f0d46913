import FerryCore
import HTTPTypes
import NIOCore

extension TusDialect {
    /// HEAD: the durable offset (after interrupting any in-flight request on the upload).
    func head(_ id: UploadID, _ request: HTTPRequest, _ principal: Principal) async throws(FerryError) -> TusResponse {
        let record = try await engine.status(id, as: principal)
        var headers = HTTPFields()
        headers[.cacheControl] = "no-store"
        if !(record.isFinal && !record.isComplete) {
            headers[.uploadOffset] = String(record.offset)
        }
        if let length = record.length {
            headers[.uploadLength] = String(length)
        } else if !record.isFinal {
            headers[.uploadDeferLength] = "1"
        }
        if !record.metadata.isEmpty { headers[.uploadMetadata] = record.metadata.tusHeader }
        switch record.concat {
        case .none: break
        case .partial: headers[.uploadConcat] = "partial"
        case .final(let parts): headers[.uploadConcat] = "final;" + parts.map { url(of: $0, request) }.joined(separator: " ")
        }
        addExpiry(record, to: &headers)
        addBusinessResult(record, to: &headers)
        return TusResponse(status: .ok, headers: headers)
    }

    /// PATCH: appends the body at `Upload-Offset`.
    func patch<Body: AsyncSequence & Sendable>(
        _ id: UploadID,
        _ headers: TusHeaders,
        _ principal: Principal,
        body: Body,
        transport: some BodyTransport
    ) async throws(FerryError) -> TusResponse where Body.Element == ByteBuffer {
        guard headers.isOffsetStream else {
            throw FerryError(.invalidContentType, "PATCH bodies are sent as application/offset+octet-stream")
        }
        guard let offset = try headers.decimal(.uploadOffset, .invalidOffset) else {
            throw FerryError(.invalidOffset, "PATCH requires Upload-Offset")
        }
        let append = AppendRequest(
            offset: offset,
            contentLength: headers.contentLength,
            declaredLength: try headers.decimal(.uploadLength, .invalidLength),
            checksum: try headers.checksum,
            expectsTrailerChecksum: headers.announcesChecksumTrailer
        )
        let record = try await engine.append(id, append, body: body, transport: transport, as: principal)
        var responseHeaders = HTTPFields()
        responseHeaders[.uploadOffset] = String(record.offset)
        addExpiry(record, to: &responseHeaders)
        addBusinessResult(record, to: &responseHeaders)
        return TusResponse(status: .noContent, headers: responseHeaders)
    }

    /// GET: the bytes of a complete upload, with single-range support and safe headers.
    func content(_ id: UploadID, _ request: HTTPRequest, _ principal: Principal) async throws(FerryError) -> TusResponse {
        guard engine.capabilities.content else {
            throw FerryError(.methodNotAllowed, "this server does not serve uploads back")
        }
        let record = try await engine.completedUpload(id, as: principal)
        let length = record.offset
        var headers = HTTPFields()
        let type = SafeContentType.mediaType(record.metadata)
        headers[.contentType] = type
        headers[.contentDisposition] = SafeContentType.disposition(record.metadata, inline: type != "application/octet-stream")
        headers[.xContentTypeOptions] = "nosniff"
        headers[.contentSecurityPolicy] = "default-src 'none'; sandbox"
        headers[.acceptRanges] = "bytes"
        headers[.cacheControl] = "private, no-cache"
        addBusinessResult(record, to: &headers)
        switch ByteRange.parse(request.headerFields[.range], length: length) {
        case .whole:
            headers[.contentLength] = String(length)
            return TusResponse(status: .ok, headers: headers, body: .content(record, 0..<length))
        case .partial(let range):
            headers[.contentLength] = String(range.count)
            headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(length)"
            return TusResponse(status: .partialContent, headers: headers, body: .content(record, range))
        case .unsatisfiable:
            var response = errorResponse(FerryError(.rangeNotSatisfiable, "the range lies outside the upload"), method: .get)
            response.headers[.contentRange] = "bytes */\(length)"
            return response
        }
    }
}

/// A single `Range: bytes=...` request (multiple ranges are answered with the whole body).
enum ByteRange: Equatable {
    case whole
    case partial(Range<Int64>)
    case unsatisfiable

    static func parse(_ header: String?, length: Int64) -> ByteRange {
        guard let header, header.hasPrefix("bytes="), !header.contains(",") else { return .whole }
        let spec = header.dropFirst(6).trimmingCharacters(in: .whitespaces)
        guard let dash = spec.firstIndex(of: "-") else { return .whole }
        let first = spec[..<dash]
        let last = spec[spec.index(after: dash)...]
        if first.isEmpty {
            guard let suffix = Int64(last), suffix > 0 else { return last.isEmpty ? .whole : .unsatisfiable }
            return length == 0 ? .unsatisfiable : .partial(max(0, length - suffix)..<length)
        }
        guard let start = Int64(first), start >= 0 else { return .whole }
        guard start < length else { return .unsatisfiable }
        if last.isEmpty { return .partial(start..<length) }
        guard let end = Int64(last), end >= start else { return .whole }
        // RFC 9110: a last position past the end means the end (never `end + 1`, which can overflow).
        return .partial(start..<(min(end, length - 1) + 1))
    }
}

/// Content-Type and Content-Disposition that cannot make a browser run uploaded content.
enum SafeContentType {
    /// Media families served as themselves; everything else is `application/octet-stream`.
    static func mediaType(_ metadata: UploadMetadata) -> String {
        guard let declared = (metadata.string("filetype") ?? metadata.string("contentType"))?.lowercased() else {
            return "application/octet-stream"
        }
        let parts = declared.split(separator: "/", maxSplits: 1)
        let allowedFamilies: Set<Substring> = ["image", "audio", "video"]
        guard parts.count == 2, allowedFamilies.contains(parts[0]), declared != "image/svg+xml",
            declared.utf8.allSatisfy({ isTokenByte($0) || $0 == 0x2F })
        else {
            return "application/octet-stream"
        }
        return declared
    }

    static func disposition(_ metadata: UploadMetadata, inline: Bool) -> String {
        let kind = inline ? "inline" : "attachment"
        guard let name = metadata.string("filename") ?? metadata.string("name"), !name.isEmpty else { return kind }
        let ascii = String(name.unicodeScalars.map { scalar -> Character in
            scalar.isASCII && scalar.value >= 0x20 && scalar != "\"" && scalar != "\\" && scalar != "/" ? Character(scalar) : "_"
        })
        var encoded = ""
        for byte in name.utf8 {
            if isTokenByte(byte) && byte != 0x25 && byte != 0x27 && byte != 0x2A {
                encoded.append(Character(Unicode.Scalar(byte)))
            } else {
                encoded += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return "\(kind); filename=\"\(ascii)\"; filename*=UTF-8''\(encoded)"
    }

    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "+"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"),
            UInt8(ascii: "|"), UInt8(ascii: "~"), UInt8(ascii: "%"), UInt8(ascii: "'"), UInt8(ascii: "*"):
            true
        default: false
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
