import Crypto
import Foundation

/// Blocking reads of a file range, in bounded blocks: to hash a request body, or to copy it.
/// Callers run them through `BlockingIO`, never on the cooperative pool.
enum FileRange {
    /// The file ended before the range did.
    struct ShortRead: Error, CustomStringConvertible {
        var path: String
        var range: Range<Int64>
        var description: String { "\(path) ends before byte \(range.upperBound)" }
    }

    static let blockSize = 1 << 20

    /// Reads `range` of the file at `path` in blocks of at most 1 MiB, handing each to `body`.
    /// Throws `ShortRead` when the file ends early, `CancellationError` once `isCancelled`.
    static func read(path: String, range: Range<Int64>, isCancelled: () -> Bool, _ body: (Data) throws -> Void) throws {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(range.lowerBound))
        var remaining = range.count
        while remaining > 0 {
            if isCancelled() { throw CancellationError() }
            guard let block = try handle.read(upToCount: min(remaining, blockSize)), !block.isEmpty else {
                throw ShortRead(path: path, range: range)
            }
            try body(block)
            remaining -= block.count
        }
    }

    /// The Base64 digest of `range` of the file, computed off the cooperative pool; nil when
    /// the range cannot be read whole (the request then goes without a checksum).
    static func digest(_ checksum: RequestChecksum, path: String, range: Range<Int64>) async -> String? {
        try? await BlockingIO.run { isCancelled in
            switch checksum {
            case .sha256: try digest(SHA256(), path: path, range: range, isCancelled: isCancelled)
            }
        }
    }

    private static func digest<H: HashFunction>(_ hasher: H, path: String, range: Range<Int64>, isCancelled: () -> Bool) throws -> String {
        var hasher = hasher
        try read(path: path, range: range, isCancelled: isCancelled) { hasher.update(data: $0) }
        return Data(hasher.finalize()).base64EncodedString()
    }

    /// Copies `range` of the file at `path` to a new file at `copy`, block by block, off the
    /// cooperative pool.
    static func copy(path: String, range: Range<Int64>, to copy: URL) async throws {
        try await BlockingIO.run { isCancelled in
            guard FileManager.default.createFile(atPath: copy.path, contents: nil) else { throw CocoaError(.fileWriteUnknown) }
            let output = try FileHandle(forWritingTo: copy)
            defer { try? output.close() }
            try read(path: path, range: range, isCancelled: isCancelled) { try output.write(contentsOf: $0) }
        }
    }
}
