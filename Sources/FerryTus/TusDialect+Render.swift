import FerryCore
import FerryProtocol
import HTTPTypes

extension TusDialect {
    public func render(_ outcome: UploadOutcome, _ context: Context) -> UploadResponse {
        var response: UploadResponse
        switch outcome.result {
        case .options(let scenario):
            response = options(scenario: scenario)
        case .created(let record, let withUpload):
            response = UploadResponse(status: .created)
            response.headers[.location] = context.collectionURL + record.id.rawValue
            if withUpload { response.headers[.uploadOffset] = String(record.offset) }
            if let challenge = record.challengeFieldValue { response.headers[.ferryChallenge] = challenge }
            describeLifetime(record, into: &response.headers)
        case .concatenated(let record, _):
            response = UploadResponse(status: .created)
            response.headers[.location] = context.collectionURL + record.id.rawValue
            describeLifetime(record, into: &response.headers)
        case .status(let record):
            response = UploadResponse(status: .ok, headers: status(record, context))
        case .appended(let record):
            response = UploadResponse(status: .noContent)
            response.headers[.uploadOffset] = String(record.offset)
            describeLifetime(record, into: &response.headers)
        case .content(let record, let range):
            response = SafeContent.response(record, range)
        case .terminated:
            response = UploadResponse(status: .noContent)
        case .failed(let error, let failure):
            response = ErrorRendering.text(error, head: context.method == .head)
            if error.code == .unsupportedVersion { response.headers[.tusVersion] = Self.version }
            if error.code == .methodNotAllowed { response.headers[.allow] = "OPTIONS, POST, HEAD, PATCH, GET, DELETE" }
            if let created = failure.created { response.headers[.location] = context.collectionURL + created.id.rawValue }
        }
        response.headers[.tusResumable] = Self.version
        return response
    }

    /// OPTIONS on the collection, or on one scenario's (its own `Tus-Max-Size`); `Upload-Limit`
    /// too, so a client of either protocol learns the limits from one request.
    func options(scenario: String?) -> UploadResponse {
        let limits = UploadLimits(scenario: scenario, scenarios: routes.scenarios, capabilities: capabilities)
        var headers = HTTPFields()
        headers[.tusVersion] = Self.version
        headers[.tusExtension] = extensions.joined(separator: ",")
        headers[.tusChecksumAlgorithm] = ChecksumAlgorithm.advertised
        if capabilities.concatenation, capabilities.concatenationCopies { headers[.ferryConcatenation] = "copy" }
        if let maxSize = limits.maxSize { headers[.tusMaxSize] = String(maxSize) }
        headers[.uploadLimit] = limits.field()
        headers.advertiseInstantUpload(scenario: scenario, scenarios: routes.scenarios, capabilities: capabilities)
        return UploadResponse(status: .noContent, headers: headers)
    }

    /// HEAD: the durable offset, length, metadata and concatenation of an upload.
    func status(_ record: UploadRecord, _ context: Context) -> HTTPFields {
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
        case .final(let parts):
            // As the client sent it; finals made before Ferry kept the request name their parts by URL.
            headers[.uploadConcat] = record.concatRequest ?? "final;" + parts.map { context.collectionURL + $0.rawValue }.joined(separator: " ")
        }
        describeLifetime(record, into: &headers)
        return headers
    }

    /// `Upload-Expires` while the upload can expire, and the business result once complete.
    func describeLifetime(_ record: UploadRecord, into headers: inout HTTPFields) {
        if !record.isComplete, let expiresAt = record.expiresAt {
            headers[.uploadExpires] = HTTPDate.format(expiresAt)
        }
        BusinessResult.add(record, to: &headers)
    }
}
