import FerryCore
import FerryS3
import Logging
import NIOCore

/// Appends one request's bytes to an upload kept in S3.
///
/// Bytes go to a spool file of one part's size; a full file is sent as the next part while the
/// client keeps sending (at most `partConcurrency` parts in flight, then `write` waits).
/// `checkpoint()` (a long request's periodic save) reports the parts S3 has confirmed so far,
/// without waiting for the others, so the pipeline never drains. `sync()` makes the rest durable
/// where any node can find it, a tail object (less than a part) sent alongside the parts still in
/// flight, and returns once all of them are confirmed. When the sync reaches the upload's length
/// it assembles the object
/// (CompleteMultipartUpload, or one PutObject for an upload that never needed a part). The state
/// each returns is what the engine commits with the offset.
///
/// Every part but the last is exactly `partSize` bytes, so part `n` always starts at
/// `(n - 1) * partSize`: a request resumed from a committed state writes the same part numbers
/// over the same bytes as an earlier attempt that failed before its commit, and so replaces every
/// part that attempt left behind (RGW refuses to complete an upload with parts it was not told of).
///
/// Tail objects of states that are not the committed one are garbage: a resumed writer deletes
/// them, and so does the assembly; `S3ByteStore.delete` removes whatever is left.
actor S3ByteWriter: ByteWriter {
    private let context: S3StoreContext
    private let id: UploadID
    private let keys: S3UploadKeys
    private let length: Int64?
    /// Parts confirmed by S3 (and the tail as of the last sync).
    private var state: S3UploadState
    /// What the last sync or checkpoint returned (the opened state before either): the engine
    /// commits it with its end.
    private var reported: S3UploadState
    private var segment: SpoolFile?
    /// Received bytes not yet written to the segment's spool file: they go in writes of up to
    /// `coalescing` bytes (one thread-pool hop per MiB, not per 64 KiB read from the socket).
    private var pending: ByteBuffer?
    static let coalescing = 1 << 20
    private var inFlight: [(number: Int, size: Int64, task: Task<S3Part, any Error>)] = []
    /// Parts whose upload finished, by number, until they are moved into `state` in order.
    private var finished: [Int: S3Part] = [:]
    private var nextPartNumber: Int
    private var failure: FerryError?
    /// The tail object of the opened (committed) state.
    private var committedTail: String?
    /// The fence of the lock this writer works under (shared locks only): checked before every
    /// write to the bucket, so a node that lost its claim stops writing.
    private let fence: LeaseFence?
    private let partSize: Int64
    /// The tail objects this upload may have: nil when unknown (earlier requests may have left
    /// some: list them); for the first writer of a new upload, exactly the ones it wrote.
    private var knownTails: [String]?
    /// The committed tail's bytes, kept on this node by the writer that committed them
    /// (`TailHandoffs`): `resume` starts from this file instead of reading the tail object back.
    private var handedOff: SpoolFile?
    /// The state the engine said it committed (`committed()`): the one `close` may hand on.
    private var committedState: S3UploadState?
    /// The removal of earlier requests' garbage tails, started by `resume` (a listing costs a
    /// round trip the body need not wait for); awaited before this writer PUTs a tail or
    /// assembles, since a garbage tail may have the very name this writer's tail gets.
    private var cleanup: Task<Void, Never>?

    /// `first`: the writer of the request that created the upload, so no tail exists yet.
    /// `handedOff`: the committed tail's bytes, from this node's writer that committed `state`.
    init(
        context: S3StoreContext, id: UploadID, length: Int64?, state: S3UploadState, fence: LeaseFence?, first: Bool = false,
        handedOff: SpoolFile? = nil
    ) {
        self.knownTails = first ? [] : nil
        self.context = context
        self.id = id
        self.handedOff = handedOff
        self.fence = fence
        self.partSize = state.partSize ?? context.configuration.partSize
        self.keys = S3UploadKeys(prefix: context.configuration.keyPrefix, id: id)
        self.length = length
        self.state = state
        self.reported = state
        self.nextPartNumber = state.nextPartNumber
        if state.tailLength > 0 { committedTail = keys.tail(end: state.end) }
    }

    /// Prepares to append after the committed state: brings its tail back into the spool, so the
    /// next part starts with it — or rebuilds the state from the object when an earlier request
    /// completed the multipart upload but could not commit that (a crash in between).
    func resume() async throws(FerryError) {
        do {
            if state.multipartID != nil, state.objectLength == nil, try await context.storage.headObject(key: keys.object) != nil {
                try await rebaseOnObject()
                return
            }
        } catch {
            throw context.wrap(error, "checking the upload's object")
        }
        if state.end > 0 {
            let kept = committedTail
            cleanup = Task { await self.deleteTails(except: kept) }
        }
        guard state.tailLength > 0, let key = committedTail else { return }
        if let file = handedOff, file.length == state.tailLength {
            handedOff = nil
            segment = file
            return
        }
        try await spool(from: key, range: nil)
        guard segment?.length == state.tailLength else {
            throw FerryError(.storageFailure, "the tail object holds \(segment?.length ?? 0) bytes, not \(state.tailLength)")
        }
    }

    /// Deletes the upload's tail objects but `kept` (best effort: leftovers go with the upload).
    private func deleteTails(except kept: String?) async {
        let keys: [String]
        if let knownTails {
            keys = knownTails
        } else {
            guard let listed = try? await context.storage.listObjects(prefix: self.keys.tailPrefix) else { return }
            keys = listed
        }
        for key in keys where key != kept {
            // A writer that lost its lock deletes nothing more: the names may be another node's by now.
            if let fence, !fence.isValid { return }
            try? await context.storage.deleteObject(key: key)
        }
    }

    private func spool(from key: String, range: Range<Int64>?) async throws(FerryError) {
        let file = try await newSegment()
        do {
            try await context.storage.getObject(key: key, range: range) { buffer in try await file.append(buffer) }
        } catch {
            throw context.wrap(error, "reading back the upload's committed bytes")
        }
    }

    /// The committed bytes `[0, end)` are the start of the assembled object (its multipart upload
    /// is gone): a new multipart upload copies their full parts server-side, and the rest comes
    /// back into the spool. Committed with the next sync; until then the old state stays valid.
    private func rebaseOnObject() async throws {
        await handedOff?.discard()
        handedOff = nil
        let end = state.end
        let full = Int(end / partSize)
        context.logger.notice("s3.rebase", metadata: ["s3.key": "\(keys.object)", "upload.offset": "\(end)"])
        try fence?.check()
        let uploadID = try await context.storage.createMultipartUpload(key: keys.object)
        var rebased = S3UploadState()
        (rebased.multipartID, rebased.partSize) = (uploadID, partSize)
        for index in 0..<full {
            let range = Int64(index) * partSize..<Int64(index + 1) * partSize
            let etag = try await context.storage.uploadPartCopy(
                key: keys.object, uploadID: uploadID, number: index + 1, sourceKey: keys.object, sourceRange: range
            )
            rebased.parts.append(S3Part(number: index + 1, size: partSize, etag: etag))
        }
        rebased.tailLength = end - rebased.partsLength
        if rebased.tailLength > 0 { try await spool(from: keys.object, range: rebased.partsLength..<end) }
        state = rebased
        nextPartNumber = rebased.nextPartNumber
    }

    // `write` and `sync` run their work in a task of its own, awaited: cancelling the request's
    // task (a newer request stopped it) must not cut a spool write or an S3 call in half and
    // leave the writer unable to save what it already has.

    func write(_ buffer: ByteBuffer) async throws(FerryError) {
        try await Self.shielded { () async throws(FerryError) in try await self.append(buffer) }
    }

    func sync() async throws(FerryError) -> Int64 {
        try await Self.shielded { () async throws(FerryError) in try await self.save() }
    }

    /// Runs `work` in a task of its own and waits for it: the caller's cancellation does not reach it.
    private static func shielded<T: Sendable>(_ work: @escaping @Sendable () async throws(FerryError) -> T) async throws(FerryError) -> T {
        try await Task { () -> Result<T, FerryError> in
            do throws(FerryError) {
                return .success(try await work())
            } catch {
                return .failure(error)
            }
        }.value.get()
    }

    func checkpoint() async throws(FerryError) -> Int64 {
        if let failure { throw failure }
        collectFinished()
        if state.partsLength > reported.end {
            reported = state
            reported.tailLength = 0
        }
        return reported.end
    }

    private func append(_ buffer: ByteBuffer) async throws(FerryError) {
        if let failure { throw failure }
        guard state.objectLength == nil else {
            throw FerryError(.lengthExceeded, "the upload is already complete")
        }
        var buffer = buffer
        do {
            while buffer.readableBytes > 0 {
                let spooled = (segment?.length ?? 0) + Int64(pending?.readableBytes ?? 0)
                let room = Int(partSize - spooled)
                let slice = buffer.readSlice(length: min(room, buffer.readableBytes))!
                var bytes = pending ?? ByteBuffer()
                if pending == nil {
                    // Room for what this part and the upload can still take, at most `coalescing`.
                    let left = length.map { $0 - state.partsLength - spooled } ?? Int64(Self.coalescing)
                    bytes.reserveCapacity(max(slice.readableBytes, min(Self.coalescing, room, Int(clamping: left))))
                }
                bytes.writeImmutableBuffer(slice)
                pending = bytes
                if bytes.readableBytes >= Self.coalescing || spooled + Int64(slice.readableBytes) >= partSize {
                    try await flushPending()
                }
                if let file = segment, file.length >= partSize { try await sendSegment() }
            }
        } catch {
            let wrapped = context.wrap(error, "sending the upload to object storage")
            failure = wrapped
            throw wrapped
        }
    }

    /// Writes the pending bytes to the segment's spool file.
    private func flushPending() async throws {
        guard let bytes = pending else { return }
        pending = nil
        guard bytes.readableBytes > 0 else { return }
        try await currentSegment().append(bytes)
    }

    private func save() async throws(FerryError) -> Int64 {
        if let failure { throw failure }
        do {
            try await flushPending()
            let spooled = segment?.length ?? 0
            let end = state.partsLength + inFlight.reduce(0) { $0 + $1.size } + spooled
            if state.objectLength != nil {
                try await confirmInFlight(all: true)
                return state.end
            } else if let length, end == length {
                try await confirmInFlight(all: true)
                try await assemble(spooled: spooled)
            } else if spooled > 0, let file = segment {
                try await putTail(file, end: end)
            } else {
                try await confirmInFlight(all: true)
                state.tailLength = 0
            }
            reported = state
            return state.end
        } catch {
            let wrapped = context.wrap(error, "saving the upload to object storage")
            failure = wrapped
            throw wrapped
        }
    }

    /// PUTs the spooled rest as the tail object of `end` while the parts still in flight finish:
    /// the request's last parts and its tail go up together instead of one after the other. The
    /// state naming the tail is recorded only once every part and the tail are confirmed; a tail
    /// whose parts failed is garbage under a name no committed state has (removed with the others).
    private func putTail(_ file: SpoolFile, end: Int64) async throws {
        await cleanup?.value
        try fence?.check()
        let key = keys.tail(end: end)
        knownTails?.append(key)
        let storage = context.storage
        let length = file.length
        let tail = Task { try await storage.putObject(key: key, length: length, body: file.chunks()) }
        do {
            try await confirmInFlight(all: true)
        } catch {
            _ = try? await tail.value
            throw error
        }
        try await tail.value
        state.tailLength = length
    }

    func syncedState() async -> String? { reported.encoded }

    /// The engine committed what the last `sync()` returned.
    func committed() async {
        committedState = reported
    }

    func close() async {
        for (_, _, task) in inFlight { task.cancel() }
        for (_, _, task) in inFlight { _ = try? await task.value }
        inFlight.removeAll()
        pending = nil
        await handedOff?.discard()
        handedOff = nil
        await cleanup?.value
        // The committed tail's bytes stay on this node for the upload's next request, but only
        // while the segment holds exactly them: nothing was written or failed since the commit.
        if let kept = committedState, kept == reported, kept == state, failure == nil, kept.objectLength == nil, kept.tailLength > 0,
            let file = segment, file.length == kept.tailLength
        {
            segment = nil
            await context.handoffs.keep(file, state: kept, for: id)
            return
        }
        await segment?.discard()
        segment = nil
    }

    // MARK: Parts

    private func newSegment() async throws(FerryError) -> SpoolFile {
        let file = try await SpoolFile(directory: context.configuration.spoolDirectory, threadPool: context.threadPool, budget: context.budget)
        segment = file
        return file
    }

    private func currentSegment() async throws(FerryError) -> SpoolFile {
        if let segment { return segment }
        return try await newSegment()
    }

    /// Sends the current segment as the next part, in the background; waits first when
    /// `partConcurrency` parts are already on their way.
    private func sendSegment() async throws {
        guard let file = segment else { return }
        if inFlight.count >= context.configuration.partConcurrency { try await confirmInFlight(all: false) }
        try fence?.check()
        let uploadID = try await multipartID()
        // Only now is the file handed over: a failure above leaves it the current segment.
        segment = nil
        let number = nextPartNumber
        nextPartNumber += 1
        let context = context
        let key = keys.object
        // Awaited by `confirmInFlight` or cancelled and awaited by `close`.
        let task = Task<S3Part, any Error> {
            do {
                let part = try await context.sendPart(key: key, uploadID: uploadID, number: number, file: file)
                await file.discard()
                self.finished[number] = part
                return part
            } catch {
                await file.discard()
                throw error
            }
        }
        inFlight.append((number, file.length, task))
    }

    /// Waits for the oldest part in flight (or all of them) and records them, in order.
    private func confirmInFlight(all: Bool) async throws {
        while let first = inFlight.first {
            let part = try await first.task.value
            inFlight.removeFirst()
            finished[first.number] = nil
            state.parts.append(part)
            if !all { return }
        }
    }

    /// Moves the parts that finished, from the oldest on, into the state; waits for none.
    private func collectFinished() {
        while let first = inFlight.first, let part = finished.removeValue(forKey: first.number) {
            inFlight.removeFirst()
            state.parts.append(part)
        }
    }

    private func multipartID() async throws -> String {
        if let id = state.multipartID { return id }
        let id = try await context.storage.createMultipartUpload(key: keys.object)
        state.multipartID = id
        state.partSize = partSize
        return id
    }

    // MARK: Completion

    /// Makes the object from the parts and the spooled rest; the upload's tail objects go.
    private func assemble(spooled: Int64) async throws {
        await cleanup?.value
        try fence?.check()
        let total = state.partsLength + spooled
        if state.parts.isEmpty {
            if let file = segment, spooled > 0 {
                try await context.storage.putObject(key: keys.object, length: spooled, body: file.chunks())
            } else {
                try await context.storage.putObject(key: keys.object, bytes: ByteBuffer())
            }
            if let id = state.multipartID { try? await context.storage.abortMultipartUpload(key: keys.object, uploadID: id) }
        } else {
            if spooled > 0 {
                try await sendSegment()
                try await confirmInFlight(all: true)
            }
            try await context.storage.completeMultipartUpload(key: keys.object, uploadID: state.multipartID ?? "", parts: state.parts)
        }
        await segment?.discard()
        segment = nil
        state = S3UploadState()
        state.objectLength = total
        await deleteTails(except: nil)
    }
}
