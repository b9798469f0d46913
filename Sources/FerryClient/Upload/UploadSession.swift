import FerryClock
import Foundation
import HTTPTypes
import Synchronization

/// The loop behind `Upload.run()`: performs the machine's actions with the transport.
struct UploadSession {
    let upload: Upload
    /// nil for a stream whose end is not known yet.
    let length: Int64?
    let fingerprint: String?
    var machine: UploadMachine
    var stall: StallPolicy
    let clock: AnyClock
    let start: AnyClock.Instant
    /// The fields of the last answer that acknowledged bytes (the final one, once complete).
    var finalFields = UploadFields([:])
    /// What the telemetry report tells the server (`UploadSession+Telemetry.swift`).
    var telemetry = Telemetry()
    /// The file's SHA-256 (Base64) once hashed for an instant-upload announcement.
    var announcement: String?
    /// A proof of possession completed the upload: no byte was sent.
    var storedInstantly = false

    init(upload: Upload, length: Int64?) async throws(UploadError) {
        self.upload = upload
        self.length = length
        let options = upload.options
        var sizer = ChunkSizer(configuration: options.chunk, network: options.network)
        var fingerprint: String?
        var resumeURL: URL?
        if let store = options.resumeStore, let length {
            do {
                fingerprint = try await ResumeStore.fingerprint(path: upload.path, endpoint: upload.endpoint)
                    + (upload.part.map { "-part\($0.index)of\($0.count)" } ?? "")
            } catch {
                throw UploadError.localFile("\(upload.path): \(error.localizedDescription)")
            }
            if let fingerprint, let record = store.load(fingerprint), record.length == length,
                record.endpoint == upload.endpoint.absoluteString
            {
                resumeURL = URL(string: record.uploadURL)
                sizer.restore(size: record.chunkSize)
            }
        }
        if let split = upload.split { resumeURL = split.resumeURL }
        self.fingerprint = fingerprint
        self.machine = UploadMachine(
            length: length, sizer: sizer, retry: options.retry,
            checksums: ChecksumPolicy(enabled: options.checksums, limit: options.checksumLimit)
        )
        if let length, length > 0, length <= options.instantUploadLimit, upload.part == nil, upload.split == nil, upload.spool == nil {
            machine.announcesDigest = true
            machine.announcementMinimum = options.instantUploadMinimum
        }
        self.stall = options.stall
        self.clock = options.clock
        self.start = clock.now
        self.resumeURL = resumeURL
    }

    private let resumeURL: URL?

    var elapsed: Duration { clock.now - start }

    mutating func handle(_ event: UploadMachine.Event) -> UploadMachine.Action {
        let action = machine.handle(event, elapsed: elapsed, random: Double.random(in: 0..<1))
        upload.report(machine)
        return action
    }

    mutating func run() async throws(UploadError) -> UploadResult {
        let control = upload.control
        var action = handle(.start(resume: resumeURL))
        if action == .discover, let known = upload.options.discovered {
            telemetry.path = known.telemetryPath
            action = handle(.discovered(known.capabilities))
        }
        while true {
            if let terminate = control.cancellation {
                if terminate, let url = machine.url {
                    _ = await runner.run(request(.delete, url), goodput: nil)
                    forget()
                }
                throw UploadError.cancelled
            }
            if control.isPaused {
                let generation = control.generation
                await control.changed(after: generation)
                if !control.isPaused, control.cancellation == nil { action = handle(.waited) }
                continue
            }
            if let network = control.takeNetworkChange() {
                stall.network = network
                _ = handle(.networkChanged(network))
                action = handle(.waited)
                continue
            }
            let generation = control.generation
            if elapsed >= upload.options.retry.deadline, !action.isTerminal {
                throw UploadError.deadlineExceeded(lastFailure: "still uploading when the deadline passed")
            }
            switch action {
            case .finish(let url):
                let keeps = upload.options.keepsResumeRecord
                if upload.part == nil, !keeps { forget() }
                await reportTelemetry(url)
                let counters = upload.counters.withLock { $0 }
                var result = UploadResult(
                    url: url,
                    length: machine.length ?? machine.available,
                    requests: counters.requests,
                    failures: machine.failures,
                    bytesSent: counters.bytesSent,
                    finalFields: finalFields
                )
                if upload.part == nil, keeps { result.keptResumeRecord = fingerprint }
                result.storedInstantly = storedInstantly
                return result
            case .fail(let error):
                if error == .uploadGone { forget() }
                throw error
            case .startOver:
                forget()
                action = handle(.waited)
            case .wait(let delay):
                trace("wait \(delay)")
                let clock = clock
                let interrupted = await interruptible(generation) {
                    try? await clock.sleep(for: delay)
                }
                if interrupted { continue }
                action = handle(.waited)
            case .awaitData where upload.split != nil:
                if !grantSplitRoom() {
                    // The stream's new end is being saved (a split): it is granted in a moment.
                    let clock = clock
                    let interrupted = await interruptible(generation) { try? await clock.sleep(for: .milliseconds(20)) }
                    if interrupted { continue }
                }
                action = handle(.dataArrived)
            case .awaitData:
                guard let spool = upload.spool else { throw UploadError.localFile("no more bytes to send") }
                let before = spool.snapshot
                if before.available <= machine.acknowledged, !before.finished, before.failure == nil {
                    let interrupted = await interruptible(generation) { await spool.changed(after: before.generation) }
                    if interrupted { continue }
                }
                let now = spool.snapshot
                if let failure = now.failure { throw UploadError.localFile("the stream failed: \(failure)") }
                machine.updateAvailable(now.available, finished: now.finished)
                action = handle(.dataArrived)
            case .discover, .create, .locate, .send, .sendFinal:
                if let spool = upload.spool {
                    let now = spool.snapshot
                    machine.updateAvailable(now.available, finished: now.finished)
                }
                guard let event = await perform(action, generation: generation) else { continue }
                action = handle(event)
            }
        }
    }

    var runner: RequestRunner { RequestRunner(transport: upload.transport, stall: stall, clock: clock) }

    /// A split stream takes room for one request at a time from its bound; false when there
    /// is none yet.
    private mutating func grantSplitRoom() -> Bool {
        guard let bound = upload.split?.bound else { return false }
        let room = bound.grant(acknowledged: machine.acknowledged, size: machine.sizer.size)
        machine.updateAvailable(room.available, finished: room.finished)
        return room.finished || room.available > machine.acknowledged
    }

    /// Where this upload's byte 0 is in the file (non-zero for a parallel stream).
    var base: Int64 { upload.split?.bound.start ?? upload.part?.range.lowerBound ?? 0 }

    func fileRange(_ range: Range<Int64>) -> Range<Int64> { (range.lowerBound + base)..<(range.upperBound + base) }

    /// Runs `body` unless a control command arrives first; returns true when interrupted.
    private func interruptible(_ generation: Int, _ body: @escaping @Sendable () async -> Void) async -> Bool {
        let control = upload.control
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await body()
                return false
            }
            group.addTask {
                await control.changed(after: generation)
                return true
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    /// Performs a request action; returns the event, or nil when a control command interrupted it.
    private mutating func perform(_ action: UploadMachine.Action, generation: Int) async -> UploadMachine.Event? {
        if case .create = action { await prepareAnnouncement() }
        guard let request = await request(for: action) else { return nil }
        if case .send(_, let range, _) = action { telemetry.sent(Int64(range.count)) }
        let began = clock.now
        let runner = self.runner
        let goodput = machine.sizer.goodput
        let upload = self.upload
        let machineSnapshot = machine
        upload.counters.withLock { $0.requests += 1 }
        let outcome = OutcomeBox()
        let sending = request
        let interrupted = await interruptible(generation) {
            let result = await runner.run(sending, goodput: goodput) { sent in
                upload.counters.withLock { $0.inFlight = sent }
                upload.report(machineSnapshot)
            }
            outcome.set(result)
        }
        upload.counters.withLock { state in
            state.bytesSent += state.inFlight
            state.inFlight = 0
        }
        if interrupted { return nil }
        guard let result = outcome.value else { return .failed(.stalled) }
        let took = clock.now - began
        switch result {
        case .failure(let failure):
            if failure == .stalled { telemetry.stalls += 1 }
            trace("\(describe(request)) failed after \(took): \(failure)")
            return .failed(failure)
        case .response(let response):
            if request.body == nil { machine.answered(in: took) }
            trace("\(describe(request)) -> \(response.status.code) offset \(response.fields.uploadOffset.map(String.init) ?? "-") in \(took)")
            let event = interpret(action, response, duration: took)
            if case .created(let url, 0) = event, announcement != nil, let challenge = response.fields.ferryChallenge {
                return .created(url, offset: await answer(challenge, at: url))
            }
            return event
        }
    }

    private mutating func interpret(_ action: UploadMachine.Action, _ response: TransportResponse, duration: Duration) -> UploadMachine.Event {
        let fields = response.fields
        let offset = fields.uploadOffset
        let status = response.status.code
        if case .discover = action, response.status.kind == .successful { telemetry.path = fields.ferryTelemetry }
        switch (action, status) {
        case (.discover, 200...299):
            let capabilities = upload.options.dialect == .rufh
                ? rufhCapabilities(fields)
                : ServerCapabilities(
                    extensions: fields.tusExtensions, checksumAlgorithms: fields.tusChecksumAlgorithms, maxSize: fields.tusMaxSize,
                    instantUpload: fields.instantUpload
                )
            upload.options.onDiscovered?(DiscoveredServer(capabilities: capabilities, telemetryPath: fields.ferryTelemetry))
            return .discovered(capabilities)
        case (.create, 200...299) where fields.location != nil:
            guard let location = fields.location, let url = URL(string: location, relativeTo: upload.endpoint)?.absoluteURL else {
                return .failed(.status(201, code: nil, retryAfter: nil, message: "201 without a Location"))
            }
            finalFields = fields
            remember(url, acknowledged: offset ?? 0)
            return .created(url, offset: offset ?? 0)
        case (.locate, 200...299):
            guard let offset else { return .failed(.status(status, code: nil, retryAfter: nil, message: "HEAD without Upload-Offset")) }
            if let bound = upload.split?.bound, let declared = fields.uploadLength {
                bound.freeze()
                machine.serverDeclared(length: declared)
            }
            return .located(offset: offset)
        case (.send, 200...299), (.sendFinal, 200...299):
            guard let offset else { return .failed(.status(status, code: nil, retryAfter: nil, message: "PATCH without Upload-Offset")) }
            finalFields = fields
            if let url = machine.url { remember(url, acknowledged: offset) }
            return .sent(offset: offset, duration: duration)
        default:
            return .failed(
                .status(status, code: fields.ferryError, retryAfter: fields.retryAfter, message: String(decoding: response.body.prefix(300), as: UTF8.self))
            )
        }
    }

    func trace(_ line: @autoclosure () -> String) {
        guard let trace = upload.options.trace else { return }
        trace("[\(String(format: "%8.3f", elapsed.seconds))s] \(line())")
    }

    private func describe(_ request: TransportRequest) -> String {
        switch request.body {
        case .file(_, let range): "\(request.method.rawValue) \(range.lowerBound)..<\(range.upperBound)"
        default: request.method.rawValue
        }
    }

    // MARK: Resume records

    private func remember(_ url: URL, acknowledged: Int64) {
        upload.split?.onAcknowledged(url, acknowledged)
        guard let store = upload.options.resumeStore, let fingerprint, let length else { return }
        try? store.save(
            ResumeRecord(
                fingerprint: fingerprint,
                endpoint: upload.endpoint.absoluteString,
                uploadURL: url.absoluteString,
                length: length,
                acknowledged: acknowledged,
                chunkSize: machine.sizer.size
            )
        )
    }

    func forget() {
        guard let store = upload.options.resumeStore, let fingerprint else { return }
        store.remove(fingerprint)
    }
}

/// Carries a request's outcome out of an interruptible child task.
final class OutcomeBox: Sendable {
    private let storage = Mutex<RequestRunner.Outcome?>(nil)
    func set(_ value: RequestRunner.Outcome) { storage.withLock { $0 = value } }
    var value: RequestRunner.Outcome? { storage.withLock { $0 } }
}
