import FerryCore

/// How the server speaks HTTP on its one port: HTTP/1.1 in plain text (the default), HTTP/1.1
/// and HTTP/2 over TLS chosen by ALPN, or plain-text HTTP/2 with prior knowledge beside
/// HTTP/1.1 (`h2c`, for a proxy that speaks h2 to its upstreams).
public struct HTTPTransport: Sendable, Equatable {
    /// The certificate chain and private key (PEM); nil serves plain text.
    public var tls: TLSFiles?
    /// Accept HTTP/2 with prior knowledge on a plain-text port (HTTP/1.1 still works there).
    public var h2c: Bool
    /// Flow-control windows and limits of HTTP/2 connections.
    public var http2: HTTP2Limits

    public init(tls: TLSFiles? = nil, h2c: Bool = false, http2: HTTP2Limits = HTTP2Limits()) {
        self.tls = tls
        self.h2c = h2c
        self.http2 = http2
    }

    /// Whether connections may speak HTTP/2.
    public var offersHTTP2: Bool { tls != nil || h2c }

    public func validate() throws(ConfigurationError) {
        if tls != nil, h2c { throw ConfigurationError("h2c", "is for plain text; with --tls-cert HTTP/2 is chosen by ALPN") }
        if let tls {
            guard !tls.certificateChain.isEmpty else { throw ConfigurationError("tls-cert", "must name a PEM file") }
            guard !tls.privateKey.isEmpty else { throw ConfigurationError("tls-key", "must name a PEM file") }
        }
        try http2.validate()
    }
}

/// The PEM files of a TLS certificate chain (leaf first) and its private key. Both are read
/// again on SIGHUP.
public struct TLSFiles: Sendable, Equatable {
    public var certificateChain: String
    public var privateKey: String

    public init(certificateChain: String, privateKey: String) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
    }
}

/// HTTP/2 settings sized for uploads (README, "Deployment").
///
/// One stream's throughput is at most its window divided by the round-trip time: a 64 KiB
/// window (the protocol's default) caps an upload at 640 KB/s on a 100 ms mobile link and at
/// 210 KB/s on a 300 ms one. The defaults let one stream carry 4 MiB per round trip (≈ 40 MB/s
/// at 100 ms, 13 MB/s at 300 ms: more than mobile links deliver), and bound what a connection
/// may have received but not yet consumed to the connection window, 8 MiB, whatever the number
/// of its streams.
public struct HTTP2Limits: Sendable, Equatable {
    /// Bytes a client may send on one stream ahead of the server's reading (SETTINGS_INITIAL_WINDOW_SIZE).
    public var streamWindow: Int
    /// Bytes a client may send on all streams of a connection ahead of the server's reading:
    /// the most one connection's unread request bodies can hold in memory.
    public var connectionWindow: Int
    /// Streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    public var maxConcurrentStreams: Int
    /// The largest frame a client may send (SETTINGS_MAX_FRAME_SIZE). Clients that follow it
    /// (NIOHTTP2 and so AsyncHTTPClient, OkHttp, Go, Python's h2) send an upload in frames of
    /// this size, and each frame costs both ends the same whatever its size (`ferry put` over
    /// TLS: 25% less server CPU per GiB at 64 KiB than at the protocol's 16 KiB in one run, no
    /// difference in another). Non-DATA frames are held whole until parsed, so a connection may hold
    /// a header block of up to six frames of this size (NIOHTTP2 allows five CONTINUATIONs).
    public var maxFrameSize: Int
    /// WINDOW_UPDATE frames a connection may send per second (averaged over 10 s) before it is
    /// closed: the HTTP/2 library rate-limits resets, pings, settings and empty frames, not these.
    public var maxWindowUpdatesPerSecond: Int

    public init(
        streamWindow: Int = 4 << 20,
        connectionWindow: Int = 8 << 20,
        maxConcurrentStreams: Int = 100,
        maxFrameSize: Int = 64 << 10,
        maxWindowUpdatesPerSecond: Int = 10_000
    ) {
        self.streamWindow = streamWindow
        self.connectionWindow = connectionWindow
        self.maxConcurrentStreams = maxConcurrentStreams
        self.maxFrameSize = maxFrameSize
        self.maxWindowUpdatesPerSecond = maxWindowUpdatesPerSecond
    }

    /// The largest window HTTP/2 allows (2^31 - 1).
    static let maxWindow = Int(Int32.max)
    /// The frame sizes HTTP/2 allows a peer to announce (RFC 9113 §6.5.2).
    static let frameSizes = 16_384...16_777_215

    public func validate() throws(ConfigurationError) {
        guard (65_535...Self.maxWindow).contains(streamWindow) else { throw ConfigurationError("h2-stream-window", "must be 64K to 2G") }
        guard (65_535...Self.maxWindow).contains(connectionWindow) else { throw ConfigurationError("h2-connection-window", "must be 64K to 2G") }
        guard connectionWindow >= streamWindow else {
            throw ConfigurationError("h2-connection-window", "must be at least the stream window (\(streamWindow) bytes)")
        }
        guard (1...10_000).contains(maxConcurrentStreams) else { throw ConfigurationError("h2-max-streams", "must be 1 to 10000") }
        guard Self.frameSizes.contains(maxFrameSize) else { throw ConfigurationError("h2-max-frame", "must be 16K to 16M - 1") }
        guard maxWindowUpdatesPerSecond > 0 else { throw ConfigurationError("h2-max-window-updates", "must be positive") }
    }
}
