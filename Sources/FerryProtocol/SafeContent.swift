import FerryCore
import HTTPTypes

/// The answer to a GET of a complete upload: its bytes (or the range asked for), with
/// Content-Type and Content-Disposition that cannot make a browser run uploaded content.
public enum SafeContent {
    /// The response to a read of `record` (complete); the adapter streams the bytes.
    public static func response(_ record: UploadRecord, _ request: ByteRange.Request) -> UploadResponse {
        let length = record.offset
        var headers = HTTPFields()
        let type = mediaType(record.metadata)
        headers[.contentType] = type
        headers[.contentDisposition] = disposition(record.metadata, inline: type != "application/octet-stream")
        headers[.xContentTypeOptions] = "nosniff"
        headers[.contentSecurityPolicy] = "default-src 'none'; sandbox"
        headers[.acceptRanges] = "bytes"
        headers[.cacheControl] = "private, no-cache"
        BusinessResult.add(record, to: &headers)
        switch request.resolve(length: length) {
        case .whole:
            headers[.contentLength] = String(length)
            return UploadResponse(status: .ok, headers: headers, body: .content(record, 0..<length))
        case .partial(let range):
            headers[.contentLength] = String(range.count)
            headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(length)"
            return UploadResponse(status: .partialContent, headers: headers, body: .content(record, range))
        case .unsatisfiable:
            var response = ErrorRendering.text(FerryError(.rangeNotSatisfiable, "the range lies outside the upload"))
            response.headers[.contentRange] = "bytes */\(length)"
            return response
        }
    }

    /// Media families served as themselves; everything else is `application/octet-stream`.
    public static func mediaType(_ metadata: UploadMetadata) -> String {
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

    public static func disposition(_ metadata: UploadMetadata, inline: Bool) -> String {
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
                let hex = String(byte, radix: 16, uppercase: true)
                encoded += "%" + (hex.count < 2 ? "0" + hex : hex)
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

/// The business result of a complete upload, on every response that describes it.
public enum BusinessResult {
    public static func add(_ record: UploadRecord, to headers: inout HTTPFields) {
        guard record.isComplete, let business = record.business else { return }
        headers[.ferryBusinessStatus] = business.status.rawValue
        if business.status == .done, let json = business.json { headers[.ferryBusinessResult] = json }
    }
}
