#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif
import FerryCore
import Foundation
import NIOCore

/// Blocking POSIX file operations. Call only on a thread pool.
enum DiskIO {
    struct Failure: Error, CustomStringConvertible {
        var errno: Int32
        var description: String { String(cString: strerror(errno)) + " (errno \(errno))" }
    }

    static func wrap(_ error: any Error, _ what: String) -> FerryError {
        if let error = error as? FerryError { return error }
        if let failure = error as? Failure, failure.errno == ENOSPC || failure.errno == EDQUOT {
            return FerryError(.storageFull, "the server's storage is full; retry later", underlying: failure)
        }
        return FerryError(.storageFailure, "storage failed while \(what)", underlying: error)
    }

    static func check(_ result: Int32) throws {
        if result < 0 { throw Failure(errno: errno) }
    }

    /// Creates an empty file; its directory entry becomes durable with the next directory sync.
    static func createEmpty(_ path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o640)
        try check(fd)
        close(fd)
    }

    /// Opens for appending at `offset`, creating the file if needed and cutting any tail past it.
    ///
    /// A file with more than one name shares its bytes with another upload (a hard link made by
    /// a concatenation or an instant upload, whose catalog commit a crash may have missed): it is
    /// never cut or written in place, but first replaced by a file of its own holding its first
    /// `offset` bytes.
    static func openForAppend(_ path: String, at offset: Int64) throws -> Int32 {
        for _ in 0..<3 {
            let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o640)
            try check(fd)
            var info = stat()
            guard fstat(fd, &info) == 0 else {
                let failure = Failure(errno: errno)
                close(fd)
                throw failure
            }
            if info.st_nlink > 1 {
                close(fd)
                try unshare(path, keeping: min(offset, Int64(info.st_size)))
                continue
            }
            if info.st_size > offset && ftruncate(fd, off_t(offset)) != 0 {
                let failure = Failure(errno: errno)
                close(fd)
                throw failure
            }
            return fd
        }
        throw Failure(errno: EMLINK)
    }

    /// The suffixes of the temporary names a link (`linkReplacing`) and an unsharing (`unshare`)
    /// create beside an upload's file and rename over it.
    static let temporarySuffixes = [linkSuffix, ownSuffix]
    static let linkSuffix = ".link"
    static let ownSuffix = ".own"

    /// True for `<upload id><temporary suffix>`.
    static func isTemporaryName(_ name: String) -> Bool {
        temporarySuffixes.contains { suffix in name.hasSuffix(suffix) && UploadID(String(name.dropLast(suffix.count))) != nil }
    }

    /// Replaces `path`, one of several names of a file, by a file of its own holding the first
    /// `count` bytes, durably (synced, renamed over, the folder synced).
    static func unshare(_ path: String, keeping count: Int64) throws {
        let temporary = path + ownSuffix
        unlink(temporary)
        let out = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        try check(out)
        defer { close(out) }
        if count > 0 {
            let input = open(path, O_RDONLY | O_CLOEXEC)
            try check(input)
            defer { close(input) }
            var position: Int64 = 0
            try copy(from: input, to: out, count: count, at: &position)
        }
        try check(fsync(out))
        try check(rename(temporary, path))
        try syncDirectory(folder(of: path))
    }

    /// The folder of `path` (`.` for a bare name).
    static func folder(of path: String) -> String {
        let folder = (path as NSString).deletingLastPathComponent
        return folder.isEmpty ? "." : folder
    }

    static func openForReading(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try check(fd)
        return fd
    }

    static func size(_ path: String) throws -> Int64? {
        var info = stat()
        if stat(path, &info) != 0 {
            if errno == ENOENT { return nil }
            throw Failure(errno: errno)
        }
        return Int64(info.st_size)
    }

    static func remove(_ path: String) throws {
        if unlink(path) != 0, errno != ENOENT { throw Failure(errno: errno) }
    }

    /// Names and modification times of the regular files in `path`.
    static func list(_ path: String) throws -> [(name: String, modified: Date)] {
        guard let directory = opendir(path) else { throw Failure(errno: errno) }
        defer { closedir(directory) }
        var entries: [(name: String, modified: Date)] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            var info = stat()
            guard stat("\(path)/\(name)", &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
            entries.append((name, Date(timeIntervalSince1970: Double(info.st_mtim.tv_sec))))
        }
        return entries
    }

    static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try check(fd)
        defer { close(fd) }
        try check(fsync(fd))
    }

    static func dataSync(_ fd: Int32) throws {
        try check(fdatasync(fd))
    }

    /// Writes the whole buffer at `offset`; returns how much was written and the errno that stopped it.
    ///
    /// Leaves `reserve` bytes of the file system free: what does not fit above it is refused
    /// with `ENOSPC`, so the catalog (often on the same file system) can still commit the
    /// offset of the bytes that did fit.
    static func writeAll(_ fd: Int32, _ buffer: ByteBuffer, at offset: Int64, reserve: Int64 = 0) -> (written: Int, error: Int32) {
        buffer.withUnsafeReadableBytes { bytes -> (Int, Int32) in
            var count = bytes.count
            var refused: Int32 = 0
            if reserve > 0 {
                var info = statvfs()
                if fstatvfs(fd, &info) == 0 {
                    let free = Int64(clamping: Double(info.f_bavail) * Double(info.f_frsize))
                    let room = max(0, free - reserve)
                    if room < Int64(count) {
                        count = Int(room)
                        refused = ENOSPC
                    }
                }
            }
            let (written, failure) = PositionalIO.write(fd, UnsafeRawBufferPointer(rebasing: bytes[0..<count]), at: offset)
            return (written, failure != 0 ? failure : refused)
        }
    }

    static func read(_ fd: Int32, count: Int, at offset: Int64) throws -> ByteBuffer {
        do {
            return try PositionalIO.read(fd, count: count, at: offset)
        } catch {
            throw Failure(errno: error.errno)
        }
    }

    /// Makes `destination` hold the first `lengths[i]` bytes of each source, in order, durably.
    ///
    /// One source of exactly its length (a file uploaded as one stream, then "concatenated") is
    /// hard-linked: a complete upload never changes, so both names can share it. Otherwise
    /// the bytes are copied in the kernel (`sendfile`, falling back to read/write).
    static func concatenate(_ sources: [String], lengths: [Int64], into destination: String) throws {
        if sources.count == 1, let length = lengths.first, try size(sources[0]) == length, linkReplacing(sources[0], destination) {
            return
        }
        let out = open(destination, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        try check(out)
        defer { close(out) }
        var outPosition: Int64 = 0
        for (source, length) in zip(sources, lengths) {
            let input = open(source, O_RDONLY | O_CLOEXEC)
            try check(input)
            defer { close(input) }
            try copy(from: input, to: out, count: length, at: &outPosition)
        }
        try check(fsync(out))
    }

    /// Links `source` to a temporary name and renames it over `destination`, then syncs the
    /// folder; false when the file system cannot (the caller copies instead).
    private static func linkReplacing(_ source: String, _ destination: String) -> Bool {
        let temporary = destination + linkSuffix
        unlink(temporary)
        guard link(source, temporary) == 0 else { return false }
        guard rename(temporary, destination) == 0 else {
            unlink(temporary)
            return false
        }
        return (try? syncDirectory(folder(of: destination))) != nil
    }

    /// Copies `count` bytes from the start of `input` to `out` at `position` (where `out`'s
    /// file offset is), in the kernel with `sendfile(2)`.
    private static func copy(from input: Int32, to out: Int32, count: Int64, at position: inout Int64) throws {
        var from = off_t(0)
        var remaining = count
        while remaining > 0 {
            let copied = sendfile(out, input, &from, Int(min(remaining, 1 << 30)))
            if copied < 0, errno == EINTR { continue }
            if copied < 0, [EINVAL, ENOSYS, EOPNOTSUPP].contains(errno) {
                try copyByReading(from: input, at: Int64(from), to: out, at: position, count: remaining)
                position += remaining
                _ = lseek(out, off_t(position), SEEK_SET)
                return
            }
            if copied < 0 { throw Failure(errno: errno) }
            if copied == 0 { throw Failure(errno: EIO) }
            position += Int64(copied)
            remaining -= Int64(copied)
        }
    }

    private static func copyByReading(from input: Int32, at start: Int64, to out: Int32, at outStart: Int64, count: Int64) throws {
        let chunk = 1 << 20
        let block = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 16)
        defer { block.deallocate() }
        var done: Int64 = 0
        while done < count {
            let read = pread(input, block, Int(min(count - done, Int64(chunk))), off_t(start + done))
            if read < 0, errno == EINTR { continue }
            if read < 0 { throw Failure(errno: errno) }
            if read == 0 { throw Failure(errno: EIO) }
            let (_, failure) = PositionalIO.write(out, UnsafeRawBufferPointer(start: block, count: read), at: outStart + done)
            if failure != 0 { throw Failure(errno: failure) }
            done += Int64(read)
        }
    }
}
