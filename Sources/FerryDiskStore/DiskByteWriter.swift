#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif
import FerryCore
import NIOCore
import NIOPosix

/// Appends to one upload file: gathers incoming buffers up to `bufferSize`, then one
/// `pwrite` on the thread pool; `sync()` writes the rest and `fdatasync`s.
actor DiskByteWriter: ByteWriter {
    private let fd: Int32
    private let threadPool: NIOThreadPool
    private let bufferSize: Int
    /// End of the bytes handed to the kernel.
    private var position: Int64
    private var pending: ByteBuffer?
    private var closed = false

    /// Bytes of the file system left free for the catalog (`DiskIO.writeAll`).
    private let reserve: Int64

    init(fd: Int32, position: Int64, threadPool: NIOThreadPool, bufferSize: Int, reserve: Int64 = 0) {
        self.reserve = reserve
        self.fd = fd
        self.position = position
        self.threadPool = threadPool
        self.bufferSize = bufferSize
    }

    func write(_ buffer: ByteBuffer) async throws(FerryError) {
        if var pending {
            self.pending = nil
            if pending.writableBytes < buffer.readableBytes {
                pending.reserveCapacity(minimumWritableBytes: max(buffer.readableBytes, bufferSize - pending.readableBytes))
            }
            pending.writeImmutableBuffer(buffer)
            self.pending = pending
        } else {
            pending = buffer
        }
        if let pending, pending.readableBytes >= bufferSize {
            try await flush()
        }
    }

    func sync() async throws(FerryError) -> Int64 {
        try await flush()
        let fd = self.fd
        do {
            try await threadPool.runIfActive { try DiskIO.dataSync(fd) }
        } catch {
            throw DiskIO.wrap(error, "syncing an upload file")
        }
        return position
    }

    func close() async {
        guard !closed else { return }
        closed = true
        pending = nil
        let fd = self.fd
        try? await threadPool.runIfActive { _ = Glibc.close(fd) }
    }

    private func flush() async throws(FerryError) {
        guard let buffer = pending, buffer.readableBytes > 0 else { return }
        pending = nil
        let fd = self.fd
        let at = position
        let reserve = self.reserve
        let outcome: (written: Int, error: Int32)
        do {
            outcome = try await threadPool.runIfActive { DiskIO.writeAll(fd, buffer, at: at, reserve: reserve) }
        } catch {
            throw DiskIO.wrap(error, "writing an upload file")
        }
        position += Int64(outcome.written)
        if outcome.error != 0 {
            throw DiskIO.wrap(DiskIO.Failure(errno: outcome.error), "writing an upload file")
        }
    }
}
