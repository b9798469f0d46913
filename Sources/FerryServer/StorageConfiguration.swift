import FerryCore
import FerryS3
import FerryS3Store
import Foundation

/// Where upload bytes live.
public enum StorageConfiguration: Sendable, Equatable {
    /// `<data>/uploads`, one file per upload (one node).
    case disk
    /// An S3-compatible bucket (several nodes share it).
    case s3(S3StorageConfiguration)
}

/// An S3-compatible bucket and how Ferry uses it.
public struct S3StorageConfiguration: Sendable, Equatable {
    public var endpoint: URL
    public var bucket: String
    /// Prepended to every object name; may be empty.
    public var keyPrefix: String
    public var region: String
    public var accessKeyID: String
    public var secretAccessKey: String
    public var partSize: Int64
    public var partConcurrency: Int
    /// Most spool bytes on this node (in `<data>/spool`).
    public var spoolLimit: Int64
    /// Create the bucket at start-up if it is missing (tests, first set-up).
    public var createBucket: Bool

    public init(
        endpoint: URL,
        bucket: String,
        keyPrefix: String = "uploads/",
        region: String = "us-east-1",
        accessKeyID: String,
        secretAccessKey: String,
        partSize: Int64 = 8 << 20,
        partConcurrency: Int = 4,
        spoolLimit: Int64 = 1 << 30,
        createBucket: Bool = false
    ) {
        self.endpoint = endpoint
        self.bucket = bucket
        self.keyPrefix = keyPrefix
        self.region = region
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.partSize = partSize
        self.partConcurrency = partConcurrency
        self.spoolLimit = spoolLimit
        self.createBucket = createBucket
    }

    /// Parses `s3://BUCKET` or `s3://BUCKET/PREFIX` (the prefix gets a trailing `/`).
    public static func parseLocation(_ text: String) -> (bucket: String, prefix: String)? {
        guard text.hasPrefix("s3://") else { return nil }
        let rest = text.dropFirst(5)
        let pieces = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let bucket = pieces.first, !bucket.isEmpty else { return nil }
        var prefix = pieces.count > 1 ? String(pieces[1]) : "uploads"
        if !prefix.isEmpty, !prefix.hasSuffix("/") { prefix += "/" }
        return (String(bucket), prefix)
    }

    public func validate() throws(ConfigurationError) {
        guard endpoint.scheme == "http" || endpoint.scheme == "https", endpoint.host != nil else {
            throw ConfigurationError("s3-endpoint", "must be an http(s) URL")
        }
        guard !accessKeyID.isEmpty, !secretAccessKey.isEmpty else {
            throw ConfigurationError("s3-access-key", "S3 storage needs an access key and a secret key")
        }
        guard partSize >= S3StoreConfiguration.minimumPartSize, partSize <= 5 << 30 else {
            throw ConfigurationError("s3-part-size", "must be between 5M and 5G")
        }
        guard (1...16).contains(partConcurrency) else {
            throw ConfigurationError("s3-part-concurrency", "must be 1-16")
        }
        guard spoolLimit >= partSize * Int64(partConcurrency + 1) else {
            throw ConfigurationError("spool-limit", "must hold at least (part concurrency + 1) parts")
        }
    }
}

/// Where upload records live.
public enum CatalogConfiguration: Sendable, Equatable {
    /// `<data>/catalog.sqlite` (one node).
    case sqlite
    /// A PostgreSQL database shared by every node: `postgres://user:password@host:port/database`.
    case postgres(url: String)
}
