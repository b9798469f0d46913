#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif
import NIOCore

/// Blocking POSIX positional reads and writes (`pread`/`pwrite`), retried through `EINTR` and
/// short transfers: the one file I/O helper of both stores (the disk store's upload files, the
/// S3 store's spool). Call only on a thread pool, never on an event loop.
public enum PositionalIO {
    /// Writes `bytes` at `offset`; returns how many were written and the `errno` that stopped
    /// the write early (0 when all were written).
    public static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64) -> (written: Int, error: Int32) {
        guard let base = bytes.baseAddress else { return (0, 0) }
        var written = 0
        while written < bytes.count {
            let result = pwrite(fd, base + written, bytes.count - written, off_t(offset) + off_t(written))
            if result < 0 {
                if errno == EINTR { continue }
                return (written, errno)
            }
            written += result
        }
        return (written, 0)
    }

    /// Reads up to `count` bytes at `offset` (fewer at the end of the file); throws the `errno`.
    public static func read(_ fd: Int32, count: Int, at offset: Int64) throws(POSIXFailure) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        var failure: Int32 = 0
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { bytes -> Int in
            guard let base = bytes.baseAddress else { return 0 }
            while true {
                let result = pread(fd, base, count, off_t(offset))
                if result >= 0 { return result }
                if errno != EINTR {
                    failure = errno
                    return 0
                }
            }
        }
        if failure != 0 { throw POSIXFailure(errno: failure) }
        return buffer
    }
}

/// A failed system call, by its `errno`.
public struct POSIXFailure: Error, Sendable, CustomStringConvertible {
    public var errno: Int32
    public init(errno: Int32) { self.errno = errno }
    public var description: String { String(cString: strerror(errno)) + " (errno \(errno))" }
}
