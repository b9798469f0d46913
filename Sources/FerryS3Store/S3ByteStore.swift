import FerryCore
import FerryS3
import Foundation
import Logging
import NIOCore
import NIOPosix

/// How the S3 store cuts and spools uploads.
public struct S3StoreConfiguration: Sendable {
    /// S3's smallest part (except the last).
    public static let minimumPartSize: Int64 = 5 << 20

    /// Prepended to every object name (`uploads/<id>`, `uploads/<id>.tail/<end>`).
    public var keyPrefix: String
    /// Bytes per part (≥ 5 MiB): larger parts mean fewer requests, more spool per upload.
    public var partSize: Int64
    /// Parts of one upload on their way to S3 at once, while its client keeps sending.
    public var partConcurrency: Int
    /// Local folder for spool files (each unlinked at once: nothing is left after a crash).
    public var spoolDirectory: String
    /// Most spool bytes on this node; writers wait beyond it.
    public var spoolLimit: Int64
    /// How long a writer waits for spool room before its request ends with `ERR_STORAGE_FULL`.
    public var spoolPatience: Duration
    /// How long a committed tail stays in the spool for the upload's next request (`TailHandoffs`).
    var tailHandoffLifetime: Duration = .seconds(10)

    public init(
        keyPrefix: String = "uploads/",
        partSize: Int64 = 8 << 20,
        partConcurrency: Int = 4,
        spoolDirectory: String,
        spoolLimit: Int64 = 1 << 30,
        spoolPatience: Duration = .seconds(30)
    ) {
        self.keyPrefix = keyPrefix
        self.partSize = max(partSize, Self.minimumPartSize)
        self.partConcurrency = max(1, partConcurrency)
        self.spoolDirectory = spoolDirectory
        self.spoolLimit = max(spoolLimit, self.partSize)
        self.spoolPatience = spoolPatience
    }
}

/// What the store and its writers share.
struct S3StoreContext: Sendable {
    let storage: any ObjectStorage
    let configuration: S3StoreConfiguration
    let threadPool: NIOThreadPool
    let budget: SpoolBudget
    /// Committed tails kept for the next request on this node.
    let handoffs: TailHandoffs
    let logger: Logger

    /// Sends a spool file as part `number`, retrying transient failures (the file stays readable).
    func sendPart(key: String, uploadID: String, number: Int, file: SpoolFile) async throws -> S3Part {
        var attempt = 0
        while true {
            do {
                let etag = try await storage.uploadPart(key: key, uploadID: uploadID, number: number, length: file.length, body: file.chunks())
                return S3Part(number: number, size: file.length, etag: etag)
            } catch {
                attempt += 1
                guard attempt < 3, Self.isTransient(error), !Task.isCancelled else { throw error }
                logger.warning("s3.part_retry", metadata: ["s3.key": "\(key)", "s3.part": "\(number)", "error": "\(error)"])
                try await Task.sleep(for: .milliseconds(300 * attempt))
            }
        }
    }

    /// Server errors and broken connections are worth another try; S3's refusals are not.
    static func isTransient(_ error: any Error) -> Bool {
        if let failure = error as? S3Response.Failure { return failure.status >= 500 || failure.code == "RequestTimeout" }
        return !(error is FerryError) && !(error is CancellationError)
    }

    func wrap(_ error: any Error, _ what: String) -> FerryError {
        if let error = error as? FerryError { return error }
        return FerryError(.storageFailure, "object storage failed while \(what)", underlying: error)
    }
}

/// A `ByteStore` on S3-compatible object storage (Ceph RGW, AWS S3, ...).
///
/// One upload is one multipart upload, cut into parts through a bounded local spool; a
/// remainder smaller than a part is kept in a tail object until the next request prepends it.
/// Where the bytes are (multipart id, parts with sizes and ETags, tail length) is the upload's
/// `storeState`, committed in the catalog with its offset, so any node can continue the upload
/// and a crash between S3 and the catalog leaves only garbage, never a wrong offset. A complete
/// upload is one object (`keyPrefix + id`), read back with ranged GETs.
public final class S3ByteStore: ReadableByteStore, ConcatenatingByteStore, ReferencingByteStore {
    public let name = "s3"
    let context: S3StoreContext

    /// Creates the spool folder if needed. Call from start-up code.
    public init(storage: any ObjectStorage, configuration: S3StoreConfiguration, threadPool: NIOThreadPool, logger: Logger) throws(FerryError) {
        do {
            try FileManager.default.createDirectory(atPath: configuration.spoolDirectory, withIntermediateDirectories: true)
        } catch {
            throw FerryError(.storageFailure, "cannot create the spool folder \(configuration.spoolDirectory)", underlying: error)
        }
        context = S3StoreContext(
            storage: storage,
            configuration: configuration,
            threadPool: threadPool,
            budget: SpoolBudget(limit: configuration.spoolLimit, patience: configuration.spoolPatience),
            handoffs: TailHandoffs(lifetime: configuration.tailHandoffLifetime, limit: configuration.spoolLimit / 4),
            logger: logger
        )
    }

    /// Spool bytes in use on this node (for metrics and tests).
    public var spoolBytes: Int64 { context.budget.inUse }

    func keys(_ id: UploadID) -> S3UploadKeys { S3UploadKeys(prefix: context.configuration.keyPrefix, id: id) }

    /// `s3://bucket/key` of the upload's object.
    public func location(of record: UploadRecord) -> String {
        let bucket = (context.storage as? S3Client)?.location.bucket ?? "bucket"
        return "s3://\(bucket)/\(keys(record.id).object)"
    }

    /// Nothing to prepare: the multipart upload starts with the first part.
    public func create(for record: UploadRecord) async throws(FerryError) {}

    public func openWriter(for record: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> any ByteWriter {
        try await openWriter(for: record, fence: fence, first: false)
    }

    /// The creating request's writer knows every tail object there is (those it writes itself),
    /// so completing such an upload lists nothing: a small upload costs one PutObject.
    public func openFirstWriter(for record: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> any ByteWriter {
        try await openWriter(for: record, fence: fence, first: record.offset == 0 && record.storeState == nil)
    }

    private func openWriter(for record: UploadRecord, fence: LeaseFence?, first: Bool) async throws(FerryError) -> any ByteWriter {
        let state = try S3UploadState(record)
        var handedOff: SpoolFile?
        if let entry = await context.handoffs.take(record.id) {
            if entry.state == state { handedOff = entry.file } else { await entry.file.discard() }
        }
        let writer = S3ByteWriter(
            context: context, id: record.id, length: record.length, state: state, fence: fence, first: first, handedOff: handedOff
        )
        do {
            try await writer.resume()
        } catch {
            await writer.close()
            throw error
        }
        return writer
    }

    /// The committed length, checked against the bucket: a missing object or tail counts as lost bytes.
    public func storedLength(of record: UploadRecord) async throws(FerryError) -> Int64? {
        let state = try S3UploadState(record)
        let keys = keys(record.id)
        do {
            if let objectLength = state.objectLength {
                return try await context.storage.headObject(key: keys.object).map { min($0, objectLength) }
            }
            if state.tailLength > 0, try await context.storage.headObject(key: keys.tail(end: state.end)) == nil {
                return state.partsLength
            }
        } catch {
            throw context.wrap(error, "checking the upload's objects")
        }
        return state.end
    }

    /// Aborts every multipart upload and deletes every object of the upload (listed by prefix,
    /// so leftovers of crashed requests go too).
    public func delete(_ id: UploadID) async throws(FerryError) {
        await context.handoffs.take(id)?.file.discard()
        let prefix = keys(id).object
        do {
            for upload in try await context.storage.listMultipartUploads(prefix: prefix) {
                do {
                    try await context.storage.abortMultipartUpload(key: upload.key, uploadID: upload.uploadID)
                } catch let failure as S3Response.Failure where failure.uploadGone {
                    continue
                }
            }
            for key in try await context.storage.listObjects(prefix: prefix) {
                try await context.storage.deleteObject(key: key)
            }
        } catch {
            throw context.wrap(error, "deleting the upload's objects")
        }
    }

    public func read(_ record: UploadRecord, range: Range<Int64>, consume: (ByteBuffer) async throws -> Void) async throws {
        guard !range.isEmpty else { return }
        let state = try S3UploadState(record)
        guard state.objectLength != nil else {
            throw FerryError(.uploadIncomplete, "the upload is not assembled yet")
        }
        try await context.storage.getObject(key: keys(record.id).object, range: range, consume: consume)
    }

    /// S3 has no way to make one object of others without copying their bytes (even
    /// UploadPartCopy costs the store a write of every byte).
    public var concatenationCopiesBytes: Bool { true }

    /// Server-side copies (UploadPartCopy) when every part but the last is at least 5 MiB;
    /// otherwise the bytes stream through this node's spool into a new upload.
    public func concatenate(_ parts: [UploadRecord], into target: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> String? {
        let sources = parts.filter { $0.offset > 0 }
        for source in sources where try S3UploadState(source).objectLength == nil {
            throw FerryError(.storageFailure, "a partial upload of this final is not assembled")
        }
        let total = sources.reduce(0) { $0 + $1.offset }
        let copyable = !sources.isEmpty && sources.dropLast().allSatisfy { $0.offset >= S3StoreConfiguration.minimumPartSize }
        do {
            if copyable {
                return try await copyParts(sources, into: target, total: total)
            }
            let writer = S3ByteWriter(context: context, id: target.id, length: total, state: S3UploadState(), fence: fence)
            do {
                for source in sources {
                    try await context.storage.getObject(key: keys(source.id).object, range: 0..<source.offset) { buffer in
                        try await writer.write(buffer)
                    }
                }
                _ = try await writer.sync()
            } catch {
                await writer.close()
                throw error
            }
            let state = await writer.syncedState()
            await writer.close()
            return state
        } catch {
            throw context.wrap(error, "concatenating uploads")
        }
    }

    /// A server-side copy of the holder's object (`CopyObject`; past 5 GiB, a multipart upload
    /// of copied parts): RGW shares a multipart object's stored data with its copy
    /// (docs/instant-upload.md), and each upload keeps an object of its own.
    public func reference(_ holder: UploadRecord, into target: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> String? {
        guard try S3UploadState(holder).objectLength == holder.offset else {
            throw FerryError(.storageFailure, "the upload to reference is not assembled")
        }
        try fence?.check()
        do {
            guard holder.offset <= Self.copyObjectLimit else {
                return try await copyParts([holder], into: target, total: holder.offset)
            }
            try await context.storage.copyObject(key: keys(target.id).object, sourceKey: keys(holder.id).object)
        } catch {
            throw context.wrap(error, "referencing an upload's object")
        }
        var state = S3UploadState()
        state.objectLength = holder.offset
        return state.encoded
    }

    /// The largest object one `CopyObject` copies.
    static let copyObjectLimit: Int64 = 5 << 30

    /// A copied part's range: large enough that 10,000 parts cover 640 GiB, small enough that
    /// several copy at once (S3 allows 5 MiB to 5 GiB).
    static let copyPieceSize: Int64 = 64 << 20
    /// Copies in flight at once.
    static let copyConcurrency = 8

    private func copyParts(_ sources: [UploadRecord], into target: UploadRecord, total: Int64) async throws -> String {
        let key = keys(target.id).object
        // Pieces of each source: at most `copyPieceSize`, a source's last piece may be smaller
        // (it is at least 5 MiB unless it ends the final, as every source but the last is).
        var pieces: [(number: Int, source: String, range: Range<Int64>)] = []
        let pieceSize = max(Self.copyPieceSize, (total + 9_000 - 1) / 9_000)
        for source in sources {
            let count = (source.offset + pieceSize - 1) / pieceSize
            let size = (source.offset + count - 1) / count
            var start: Int64 = 0
            while start < source.offset {
                let range = start..<min(start + size, source.offset)
                pieces.append((pieces.count + 1, keys(source.id).object, range))
                start = range.upperBound
            }
        }
        let uploadID = try await context.storage.createMultipartUpload(key: key)
        let storage = context.storage
        var parts: [S3Part] = []
        try await withThrowingTaskGroup(of: S3Part.self) { group in
            var next = 0
            func start() {
                guard next < pieces.count else { return }
                let piece = pieces[next]
                next += 1
                group.addTask {
                    let etag = try await storage.uploadPartCopy(
                        key: key, uploadID: uploadID, number: piece.number, sourceKey: piece.source, sourceRange: piece.range
                    )
                    return S3Part(number: piece.number, size: Int64(piece.range.count), etag: etag)
                }
            }
            for _ in 0..<Self.copyConcurrency { start() }
            while let part = try await group.next() {
                parts.append(part)
                start()
            }
        }
        parts.sort { $0.number < $1.number }
        try await context.storage.completeMultipartUpload(key: key, uploadID: uploadID, parts: parts)
        var state = S3UploadState()
        state.objectLength = total
        return state.encoded
    }
}
