import Crypto
import Foundation

/// What a later process needs to continue an upload.
public struct ResumeRecord: Codable, Sendable, Equatable {
    public var fingerprint: String
    public var endpoint: String
    public var uploadURL: String
    public var length: Int64
    /// The highest offset the server acknowledged (informational: the server's HEAD decides).
    public var acknowledged: Int64
    /// The request size the chunk sizer had reached.
    public var chunkSize: Int64
    public var updatedAt: Date

    public init(fingerprint: String, endpoint: String, uploadURL: String, length: Int64, acknowledged: Int64, chunkSize: Int64, updatedAt: Date = Date()) {
        self.fingerprint = fingerprint
        self.endpoint = endpoint
        self.uploadURL = uploadURL
        self.length = length
        self.acknowledged = acknowledged
        self.chunkSize = chunkSize
        self.updatedAt = updatedAt
    }
}

/// What a later process needs to continue an adaptive parallel upload: its streams, each a
/// tus `partial` upload of the file range `start..<limit`.
public struct SplitPlan: Codable, Sendable, Equatable {
    public struct Segment: Codable, Sendable, Equatable {
        public var start: Int64
        public var limit: Int64
        public var uploadURL: String?
        public var complete: Bool

        public init(start: Int64, limit: Int64, uploadURL: String? = nil, complete: Bool = false) {
            self.start = start
            self.limit = limit
            self.uploadURL = uploadURL
            self.complete = complete
        }
    }

    public var fingerprint: String
    public var endpoint: String
    public var length: Int64
    /// In the order they were added; sorted by `start`, they cover the file.
    public var segments: [Segment]
    public var updatedAt: Date

    public init(fingerprint: String, endpoint: String, length: Int64, segments: [Segment], updatedAt: Date = Date()) {
        self.fingerprint = fingerprint
        self.endpoint = endpoint
        self.length = length
        self.segments = segments
        self.updatedAt = updatedAt
    }

    /// Whether the segments cover `0..<length` exactly.
    public var isConsistent: Bool {
        var next: Int64 = 0
        for segment in segments.sorted(by: { $0.start < $1.start }) {
            guard segment.start == next, segment.limit > segment.start else { return false }
            next = segment.limit
        }
        return next == length
    }
}

/// Persists resume records as one small JSON file each, replaced atomically, so an upload
/// survives the app (or `ferry put`) being killed and restarted.
public struct ResumeStore: Sendable {
    public let directory: URL

    public init(directory: URL) {
        self.directory = directory
    }

    /// `~/.cache/ferry/uploads` (or `$XDG_CACHE_HOME/ferry/uploads`).
    public static var defaultDirectory: URL {
        let environment = ProcessInfo.processInfo.environment
        let base = environment["XDG_CACHE_HOME"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
        return base.appendingPathComponent("ferry/uploads")
    }

    public func load(_ fingerprint: String) -> ResumeRecord? {
        guard let data = try? Data(contentsOf: file(fingerprint)) else { return nil }
        return try? JSONDecoder().decode(ResumeRecord.self, from: data)
    }

    public func save(_ record: ResumeRecord) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let data = try JSONEncoder().encode(record)
        try data.write(to: file(record.fingerprint), options: .atomic)
    }

    public func remove(_ fingerprint: String) {
        try? FileManager.default.removeItem(at: file(fingerprint))
        try? FileManager.default.removeItem(at: file(fingerprint, kind: "split"))
    }

    public func loadPlan(_ fingerprint: String) -> SplitPlan? {
        guard let data = try? Data(contentsOf: file(fingerprint, kind: "split")) else { return nil }
        return try? JSONDecoder().decode(SplitPlan.self, from: data)
    }

    public func savePlan(_ plan: SplitPlan) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let data = try JSONEncoder().encode(plan)
        try data.write(to: file(plan.fingerprint, kind: "split"), options: .atomic)
    }

    private func file(_ fingerprint: String, kind: String? = nil) -> URL {
        directory.appendingPathComponent(fingerprint + (kind.map { ".\($0)" } ?? "") + ".json")
    }

    /// Identifies "the same upload of the same file": the endpoint, the file's absolute path,
    /// size and modification time, and a hash of its first and last 64 KiB (read off the
    /// cooperative pool).
    public static func fingerprint(path: String, endpoint: URL) async throws -> String {
        try await BlockingIO.run { _ in try fingerprintBlocking(path: path, endpoint: endpoint) }
    }

    private static func fingerprintBlocking(path: String, endpoint: URL) throws -> String {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        var hasher = SHA256()
        hasher.update(data: Data("\(endpoint.absoluteString)\n\(url.path)\n\(size)\n\(modified)\n".utf8))
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        hasher.update(data: try handle.read(upToCount: 65_536) ?? Data())
        if size > 65_536 {
            try handle.seek(toOffset: UInt64(size - 65_536))
            hasher.update(data: try handle.read(upToCount: 65_536) ?? Data())
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
