import FerryCore
import HTTPTypes
import NIOCore

/// Runs a dialect's commands against the engine: parse, authenticate, execute, render. The one
/// place a request meets the engine, whatever protocol it speaks.
public struct UploadDispatcher: Sendable {
    public let engine: UploadEngine
    public let authenticator: any Authenticator

    public init(engine: UploadEngine, authenticator: any Authenticator = AnonymousAuthenticator()) {
        self.engine = engine
        self.authenticator = authenticator
    }

    /// Answers one request in `dialect`.
    public func respond<Dialect: UploadDialect, Body: AsyncSequence & Sendable>(
        to request: HTTPRequest,
        in dialect: Dialect,
        body: Body,
        transport: some BodyTransport & InterimResponder
    ) async -> UploadResponse where Body.Element == ByteBuffer {
        let context = dialect.context(of: request)
        let result: UploadOutcome.Result
        do {
            let command = try dialect.parse(request, context)
            if case .append(let id, let append) = command {
                // The common long request goes straight to the engine: a slow body holds every frame
                // of its call chain for as long as it trickles (`execute` is the largest one).
                let principal = try await authenticator.authenticate(authorization: request.headerFields[.authorization])
                result = await self.append(id, append, principal, dialect, context, body: body, transport: transport)
            } else {
                result = await execute(command, request, dialect, context, body: body, transport: transport)
            }
        } catch {
            result = .failed(error, UploadOutcome.Failure())
        }
        var response = dialect.render(UploadOutcome(result, at: engine.now()), context)
        if response.error?.code == .unauthorized {
            response.headers[.wwwAuthenticate] = ErrorRendering.challenge(.uploads, credentialsSent: request.headerFields[.authorization] != nil)
        }
        return response
    }

    func execute<Dialect: UploadDialect, Body: AsyncSequence & Sendable>(
        _ command: UploadCommand,
        _ request: HTTPRequest,
        _ dialect: Dialect,
        _ context: Dialect.Context,
        body: Body,
        transport: some BodyTransport & InterimResponder
    ) async -> UploadOutcome.Result where Body.Element == ByteBuffer {
        let principal: Principal
        do {
            if case .options(let scenario) = command { return .options(scenario: scenario) }
            principal = try await authenticator.authenticate(authorization: request.headerFields[.authorization])
        } catch {
            return .failed(error, UploadOutcome.Failure())
        }
        do {
            switch command {
            case .options(let scenario):
                return .options(scenario: scenario)
            case .create(let creation):
                return try await create(creation, principal, dialect, context, body: body, transport: transport)
            case .concatenate(let final):
                let record = try await engine.createFinal(
                    parts: final.parts, metadata: final.metadata, scenario: final.scenario, principal: principal,
                    address: final.forwardedAddress ?? transport.clientAddress, request: final.request, info: final.info
                )
                return .concatenated(record, request: final.request)
            case .status(let id):
                return .status(try await engine.status(id, as: principal))
            case .append(let id, let append):
                return await self.append(id, append, principal, dialect, context, body: body, transport: transport)
            case .read(let id, let range, let otherwise):
                do {
                    return .content(try await engine.completedUpload(id, as: principal), range)
                } catch where error.code == .uploadIncomplete && otherwise == .describe {
                    return .status(try await engine.status(id, as: principal))
                }
            case .terminate(let id):
                try await engine.terminate(id, as: principal)
                return .terminated(id)
            }
        } catch {
            return .failed(error, UploadOutcome.Failure())
        }
    }

    /// An append, in a frame of its own: a slow body holds it (and the ones below) for as long as
    /// it trickles, so it keeps only what the append needs.
    private func append<Dialect: UploadDialect, Body: AsyncSequence & Sendable>(
        _ id: UploadID,
        _ append: AppendRequest,
        _ principal: Principal,
        _ dialect: Dialect,
        _ context: Dialect.Context,
        body: Body,
        transport: some BodyTransport & InterimResponder
    ) async -> UploadOutcome.Result where Body.Element == ByteBuffer {
        do {
            if dialect.sendsInterims {
                let relay = InterimRelay(inner: transport, first: nil, progress: { dialect.interim(.checkpoint(offset: $0), context) })
                return .appended(try await engine.append(id, append, body: body, transport: relay, as: principal))
            }
            return .appended(try await engine.append(id, append, body: body, transport: transport, as: principal))
        } catch {
            return .failed(error, await failure(error, id, principal, dialect, provided: append.offset))
        }
    }

    private func create<Dialect: UploadDialect, Body: AsyncSequence & Sendable>(
        _ creation: UploadCommand.Creation,
        _ principal: Principal,
        _ dialect: Dialect,
        _ context: Dialect.Context,
        body: Body,
        transport: some BodyTransport & InterimResponder
    ) async throws(FerryError) -> UploadOutcome.Result where Body.Element == ByteBuffer {
        var spec = creation.spec
        spec.principal = principal
        spec.address = spec.address ?? transport.clientAddress
        guard let upload = creation.upload else {
            let record = try await engine.create(spec)
            if let interim = dialect.interim(.created(record), context) { await transport.sendInterim(interim) }
            return .created(record, withUpload: false)
        }
        // The body is appended under the lock the creation took; what a failure needs (which may
        // lock the upload again) comes after it is released.
        let (created, appended) = try await engine.create(spec) { (new: UploadEngine.NewUpload) async -> (UploadRecord, Result<UploadRecord, FerryError>?) in
            let record = new.record
            let interim = dialect.interim(.created(record), context)
            guard creation.appends(to: record) else {
                if let interim { await transport.sendInterim(interim) }
                return (record, nil)
            }
            do throws(FerryError) {
                if dialect.sendsInterims {
                    let relay = InterimRelay(inner: transport, first: interim, progress: { dialect.interim(.checkpoint(offset: $0), context) })
                    return (record, .success(try await engine.append(into: new, upload, body: body, transport: relay, as: principal)))
                }
                return (record, .success(try await engine.append(into: new, upload, body: body, transport: transport, as: principal)))
            } catch {
                return (record, .failure(error))
            }
        }
        switch appended {
        case nil:
            return .created(created, withUpload: true)
        case .success(let record):
            return .created(record, withUpload: true)
        case .failure(let error):
            var failure = await failure(error, created.id, principal, dialect, provided: 0)
            failure.created = failure.current ?? created
            return .failed(error, failure)
        }
    }

    /// What a dialect learns about an upload after an append on it failed: an overrun
    /// invalidates it (where the dialect says so), and its committed state.
    private func failure<Dialect: UploadDialect>(
        _ error: FerryError,
        _ id: UploadID,
        _ principal: Principal,
        _ dialect: Dialect,
        provided: Int64
    ) async -> UploadOutcome.Failure {
        var failure = UploadOutcome.Failure(providedOffset: provided)
        if error.code == .lengthExceeded, dialect.invalidatesOnOverrun {
            failure.invalidated = (try? await engine.terminate(id, as: principal)) != nil
        }
        if dialect.describesStateOnFailure {
            failure.current = await engine.committedRecord(id, as: principal)
        }
        return failure
    }
}

/// The transport of an append, with the dialect's informational responses: `first` just
/// before the body is read (after every check), `progress` after each durable checkpoint.
struct InterimRelay<Inner: BodyTransport & InterimResponder>: BodyTransport {
    let inner: Inner
    let first: HTTPResponse?
    let progress: @Sendable (Int64) -> HTTPResponse?

    func willReadBody() async {
        if let first { await inner.sendInterim(first) }
        await inner.willReadBody()
    }

    func bodyEnded() async -> BodyEnd { await inner.bodyEnded() }

    var clientAddress: String? { inner.clientAddress }

    func checkpointed(offset: Int64) async {
        if let response = progress(offset) { await inner.sendInterim(response) }
    }
}
