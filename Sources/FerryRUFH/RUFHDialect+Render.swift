import FerryCore
import FerryProtocol
import HTTPTypes

extension RUFHDialect {
    public func render(_ outcome: UploadOutcome, _ context: Context) -> UploadResponse {
        let form = context.form
        var response: UploadResponse
        switch outcome.result {
        case .options(let scenario):
            response = UploadResponse(status: .noContent)
            response.headers[.uploadLimit] = UploadLimits(scenario: scenario, scenarios: routes.scenarios, capabilities: capabilities).field(ageKey: form.ageKey)
            response.headers.advertiseInstantUpload(scenario: scenario, scenarios: routes.scenarios, capabilities: capabilities)
        case .created(let record, _):
            let location = context.collectionURL + record.id.rawValue
            response = record.isComplete ? completed(record, location: location) : UploadResponse(status: .created)
            response.status = .created
            response.headers[.location] = location
            if let challenge = record.challengeFieldValue { response.headers[.ferryChallenge] = challenge }
            describe(record, context, at: outcome, into: &response.headers)
        case .concatenated(let record, _), .status(let record):
            response = UploadResponse(status: .noContent)
            response.headers[.cacheControl] = "no-store"
            describe(record, context, at: outcome, into: &response.headers)
        case .appended(let record):
            response = record.isComplete ? completed(record, location: context.collectionURL + record.id.rawValue) : UploadResponse(status: .noContent)
            describe(record, context, at: outcome, into: &response.headers)
        case .content(let record, let range):
            response = SafeContent.response(record, range)
        case .terminated:
            response = UploadResponse(status: .noContent)
        case .failed(let error, let failure):
            response = failed(error, failure, context, at: outcome)
        }
        form.echo(in: &response.headers)
        return response
    }

    /// The 104 of a creation (its `Location`, before the body is read) and, from interop 6,
    /// one with `Upload-Offset` (never `Location`) after each durable checkpoint.
    public func interim(_ event: InterimEvent, _ context: Context) -> HTTPResponse? {
        let form = context.form
        var response = HTTPResponse(status: .init(code: 104, reasonPhrase: "Upload Resumption Supported"))
        switch event {
        case .created(let record):
            response.headerFields[.location] = context.collectionURL + record.id.rawValue
            if form.announcesLimits {
                response.headerFields[.uploadLimit] = UploadLimits(of: record, capabilities: capabilities, at: record.createdAt).field(ageKey: form.ageKey)
            }
        case .checkpoint(let offset):
            guard form.sendsProgress else { return nil }
            response.headerFields[.uploadOffset] = String(offset)
        }
        form.echo(in: &response.headerFields)
        return response
    }

    /// An error as `application/problem+json` (RFC 9457), with the RUFH problem types where the
    /// draft defines one. A 409 names the offset to resume from; an overrun says the upload is
    /// invalidated; answers about an upload say whether it is complete.
    func failed(_ error: FerryError, _ failure: UploadOutcome.Failure, _ context: Context, at outcome: UploadOutcome) -> UploadResponse {
        let form = context.form
        let head = context.method == .head
        var response: UploadResponse
        let record = failure.current ?? failure.created
        switch error.code {
        case .offsetMismatch:
            let expected = record?.offset ?? 0
            response = ErrorRendering.problem(
                error, type: Self.problemBase + "mismatching-upload-offset",
                extra: [("expected-offset", expected), ("provided-offset", failure.providedOffset ?? 0)], head: head
            )
            if let record { response.headers[.uploadOffset] = String(record.offset) }
        case .inconsistentLength, .lengthImmutable, .lengthExceeded:
            let shown = failure.invalidated ? FerryError(.inconsistentLength, "the body ran past the upload's length; the upload is invalidated") : error
            response = ErrorRendering.problem(shown, type: Self.problemBase + "inconsistent-upload-length", status: .badRequest, head: head)
        case .uploadCompleted:
            response = ErrorRendering.problem(error, type: form.followsNewestText ? "about:blank" : Self.problemBase + "completed-upload", head: head)
        case .checksumMismatch:
            response = ErrorRendering.problem(error, status: .badRequest, head: head)
        default:
            response = ErrorRendering.problem(error, head: head)
        }
        if error.code == .methodNotAllowed { response.headers[.allow] = "OPTIONS, POST, PUT, HEAD, GET, PATCH, DELETE" }
        if let created = failure.created { response.headers[.location] = context.collectionURL + created.id.rawValue }
        // A 413 for a limit names the limits (draft -12: SHOULD; harmless wherever limits are announced).
        if error.code == .maxSizeExceeded, form.announcesLimits {
            let limits = record.map { UploadLimits(of: $0, capabilities: capabilities, at: outcome.at) }
                ?? UploadLimits(scenario: context.scenario, scenarios: routes.scenarios, capabilities: capabilities)
            response.headers[.uploadLimit] = limits.field(ageKey: form.ageKey)
        }
        // Whether the upload is complete, on every answer about one: from draft -12 an error
        // answer is the resumable-upload protocol's own (`?0`); earlier drafts state the upload's.
        if let record, !failure.invalidated {
            form.setComplete(form.followsNewestText ? false : record.isComplete, in: &response.headers)
        } else if failure.invalidated || [.inconsistentLength, .lengthImmutable, .lengthExceeded].contains(error.code) {
            form.setComplete(false, in: &response.headers)
        }
        return response
    }

    /// The final response of a completed upload: its id, size and business result as JSON,
    /// so an app gets its business id in the same round trip, whichever request completed it.
    func completed(_ record: UploadRecord, location: String) -> UploadResponse {
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
        return UploadResponse(status: .ok, headers: headers, body: .text(writer.finish()))
    }

    /// The fields every response describing an upload carries.
    func describe(_ record: UploadRecord, _ context: Context, at outcome: UploadOutcome, into headers: inout HTTPFields) {
        let form = context.form
        headers[.uploadOffset] = String(record.offset)
        form.setComplete(record.isComplete, in: &headers)
        if form.announcesLimits {
            if let length = record.length { headers[.uploadLength] = String(length) }
            headers[.uploadLimit] = UploadLimits(of: record, capabilities: capabilities, at: outcome.at).field(ageKey: form.ageKey)
        }
        BusinessResult.add(record, to: &headers)
        if record.isComplete, context.wantsReprDigest, let sha256 = record.sha256, let bytes = Hex.decode(sha256) {
            headers[.reprDigest] = "sha-256=" + StructuredField.byteSequence(bytes)
        }
    }
}
