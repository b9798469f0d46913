#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif
import FerryCore
import Foundation
import Logging
import NIOCore
import NIOPosix

/// A `ByteStore` on local disk: one file per upload, written sequentially with `pwrite`
/// and made durable with `fdatasync`, all on a dedicated `NIOThreadPool` (never on an
/// event loop or the cooperative pool).
public final class DiskByteStore: ReadableByteStore, ConcatenatingByteStore, ReferencingByteStore, EnumerableByteStore {
    public struct Configuration: Sendable {
        /// Folder holding one file per upload; created if missing.
        public var directory: String
        /// Bytes gathered in memory before one `pwrite` (per active upload).
        public var writeBufferSize: Int
        /// Chunk size when serving bytes back.
        public var readChunkSize: Int

        /// Bytes of the file system upload writes leave free, so that the catalog can still
        /// commit the offset of what was written when the disk fills (0: none).
        public var freeSpaceReserve: Int64

        public init(directory: String, writeBufferSize: Int = 1024 * 1024, readChunkSize: Int = 256 * 1024, freeSpaceReserve: Int64 = 8 << 20) {
            self.freeSpaceReserve = freeSpaceReserve
            self.directory = directory
            self.writeBufferSize = writeBufferSize
            self.readChunkSize = readChunkSize
        }
    }

    public let name = "disk"
    let configuration: Configuration
    let threadPool: NIOThreadPool
    private let directorySync: GroupCommit<Void, Void>

    /// Opens (creating if needed) the store's folder. Call from start-up code, not a handler.
    public init(configuration: Configuration, threadPool: NIOThreadPool) throws(FerryError) {
        self.configuration = configuration
        self.threadPool = threadPool
        let directory = configuration.directory
        try Self.makeDirectory(directory)
        self.directorySync = GroupCommit(maxBatch: 1024) { inputs in
            let result: Result<Void, FerryError>
            do {
                try await threadPool.runIfActive { try DiskIO.syncDirectory(directory) }
                result = .success(())
            } catch {
                result = .failure(DiskIO.wrap(error, "syncing the upload folder"))
            }
            return Array(repeating: result, count: inputs.count)
        }
    }

    func path(_ id: UploadID) -> String { "\(configuration.directory)/\(id.rawValue)" }

    /// `file://` URL of the upload's file.
    public func location(of record: UploadRecord) -> String {
        URL(fileURLWithPath: path(record.id)).absoluteString
    }

    public func create(for record: UploadRecord) async throws(FerryError) {
        let path = path(record.id)
        try await run("creating an upload file") { try DiskIO.createEmpty(path) }
        try await directorySync.submit(())
    }

    /// A local file has no cross-node lock to honour: `fence` is nil here.
    public func openWriter(for record: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> any ByteWriter {
        let path = path(record.id)
        let offset = record.offset
        let fd = try await run("opening an upload file") { try DiskIO.openForAppend(path, at: offset) }
        return DiskByteWriter(fd: fd, position: offset, threadPool: threadPool, bufferSize: configuration.writeBufferSize, reserve: configuration.freeSpaceReserve)
    }

    public func storedLength(of record: UploadRecord) async throws(FerryError) -> Int64? {
        let path = path(record.id)
        return try await run("reading an upload's size") { try DiskIO.size(path) }
    }

    public func delete(_ id: UploadID) async throws(FerryError) {
        let path = path(id)
        try await run("deleting an upload file") { try DiskIO.remove(path) }
    }

    public func read(_ record: UploadRecord, range: Range<Int64>, consume: (ByteBuffer) async throws -> Void) async throws {
        let path = path(record.id)
        let fd = try await run("opening an upload for reading") { try DiskIO.openForReading(path) }
        do {
            var position = range.lowerBound
            let chunk = configuration.readChunkSize
            while position < range.upperBound {
                let count = Int(min(Int64(chunk), range.upperBound - position))
                let at = position
                let buffer = try await run("reading an upload") { try DiskIO.read(fd, count: count, at: at) }
                guard buffer.readableBytes > 0 else {
                    throw FerryError(.storageFailure, "the upload file is shorter than its recorded length")
                }
                position += Int64(buffer.readableBytes)
                try await consume(buffer)
            }
        } catch {
            await closeFile(fd)
            throw error
        }
        await closeFile(fd)
    }

    private func closeFile(_ fd: Int32) async {
        try? await threadPool.runIfActive { _ = close(fd) }
    }

    public func concatenate(_ parts: [UploadRecord], into target: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> String? {
        let sources = parts.map { path($0.id) }
        let lengths = parts.map(\.offset)
        let destination = path(target.id)
        try await run("concatenating uploads") { try DiskIO.concatenate(sources, lengths: lengths, into: destination) }
        return nil
    }

    /// A hard link to the holder's file (its bytes never change once complete; an append
    /// through a shared name first gets a file of its own), or a copy where the file system
    /// cannot link.
    public func reference(_ holder: UploadRecord, into target: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> String? {
        try await concatenate([holder], into: target, fence: fence)
    }

    public func storedUploads() async throws(FerryError) -> [(id: UploadID, modified: Date)] {
        let directory = configuration.directory
        let entries = try await run("listing the upload folder") { try DiskIO.list(directory) }
        return entries.compactMap { entry in UploadID(entry.name).map { ($0, entry.modified) } }
    }

    /// Temporary names (`<id>.link`, `<id>.own`) a crash left between their creation and their
    /// rename: each lives for one operation, so one older than `cutoff` is a leftover.
    public func sweepLeftovers(before cutoff: Date) async throws(FerryError) -> Int {
        let directory = configuration.directory
        return try await run("removing leftover temporary files") {
            var removed = 0
            for entry in try DiskIO.list(directory) where entry.modified < cutoff && DiskIO.isTemporaryName(entry.name) {
                if unlink("\(directory)/\(entry.name)") == 0 { removed += 1 }
            }
            return removed
        }
    }

    /// Runs blocking file work on the store's thread pool, mapping errors to `FerryError`.
    func run<T: Sendable>(_ what: String, _ work: @escaping @Sendable () throws -> T) async throws(FerryError) -> T {
        do {
            return try await threadPool.runIfActive(work)
        } catch {
            throw DiskIO.wrap(error, what)
        }
    }

    private static func makeDirectory(_ path: String) throws(FerryError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/\(component)"
            if mkdir(current, 0o750) != 0, errno != EEXIST {
                throw FerryError(.storageFailure, "cannot create the data folder \(path)", underlying: DiskIO.Failure(errno: errno))
            }
        }
    }
}
