import Foundation

extension UploadQueue {
    /// How an `UploadQueue` runs its members.
    public struct Configuration: Sendable {
        /// The options every member starts from (headers, dialect, policies, resume store,
        /// network). A member's metadata comes from `enqueue`. With no `resumeStore`, members
        /// keep their resume records in the queue's directory, under `resume/`.
        public var options: UploadOptions
        /// A fixed number of members running at once; nil (the default) chooses it from the
        /// HTTP version and the network (`concurrency(network:multiplexed:)`).
        public var concurrency: Int?
        /// Members at once over HTTP/1.1 (one connection each): 4. Until an answer says
        /// otherwise a server is taken to speak HTTP/1.1.
        public var http1Concurrency: Int
        /// Members at once once an answer came over HTTP/2 (all of them multiplexed over one
        /// connection): 8.
        public var http2Concurrency: Int
        /// Files up to this many bytes (4 MiB) go as one tus creation-with-upload request (RUFH:
        /// one creation with the whole body), in one stream: their first request is sized to
        /// hold them whatever the network, and they never split into parallel streams.
        public var singleRequestLimit: Int64

        public init(
            options: UploadOptions = UploadOptions(),
            concurrency: Int? = nil,
            http1Concurrency: Int = 4,
            http2Concurrency: Int = 8,
            singleRequestLimit: Int64 = 4 << 20
        ) {
            self.options = options
            self.concurrency = concurrency
            self.http1Concurrency = http1Concurrency
            self.http2Concurrency = http2Concurrency
            self.singleRequestLimit = singleRequestLimit
        }

        /// How many members run at once: `concurrency` when set; otherwise
        /// `http2Concurrency` once the server answered over HTTP/2, else `http1Concurrency`,
        /// halved on cellular (a slow, shared link gains nothing from more requests at once,
        /// and each one that runs keeps a file's progress moving). At least one.
        public func concurrency(network: NetworkKind, multiplexed: Bool) -> Int {
            if let concurrency { return max(1, concurrency) }
            let base = multiplexed ? http2Concurrency : http1Concurrency
            return max(1, network == .cellular ? base / 2 : base)
        }
    }

    /// A file to add with `enqueue(_:)`.
    public struct Entry: Sendable {
        public var path: String
        public var endpoint: URL
        /// nil: the one the file's extension suggests.
        public var priority: UploadPriority?
        /// Saved with the member.
        public var metadata: [(String, String)]
        /// Replaces the configuration's options for this member, in this process only.
        public var options: UploadOptions?

        public init(file path: String, endpoint: URL, priority: UploadPriority? = nil, metadata: [(String, String)] = [], options: UploadOptions? = nil) {
            self.path = path
            self.endpoint = endpoint
            self.priority = priority
            self.metadata = metadata
            self.options = options
        }
    }
}
