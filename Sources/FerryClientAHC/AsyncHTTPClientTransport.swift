import AsyncHTTPClient
import FerryClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import _NIOFileSystem

/// `UploadTransport` over AsyncHTTPClient (the default on Linux). File bodies go out in
/// 256 KiB pieces, with `sendfile(2)` on plain `http` (`FileRegionRequest`) and read into
/// buffers on `https`: memory stays bounded whatever the request size.
public struct AsyncHTTPClientTransport: UploadTransport {
    public let client: HTTPClient

    public init(client: HTTPClient) {
        self.client = client
    }

    /// A client configured for uploads: no redirects, no decompression, a connect timeout;
    /// HTTPS verified by `tls`.
    ///
    /// `http1ConnectionsPerHost` caps the HTTP/1.1 connections to one host (AHC's default is 8;
    /// `ferry put` with several files passes its queue's HTTP/1.1 concurrency, 4 by default).
    /// Over TLS the client offers h2 by ALPN and, when the server takes it, multiplexes every
    /// request to that host over one connection (`httpVersion = .automatic`).
    public static func makeClient(
        connectTimeout: Duration = .seconds(15),
        http1ConnectionsPerHost: Int = 8,
        tls: ClientTLSOptions = ClientTLSOptions(),
        http1Only: Bool = false
    ) throws(TransportTrustError) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .milliseconds(Int64(connectTimeout.components.seconds * 1000)))
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .disabled
        configuration.tlsConfiguration = try tls.tlsConfiguration()
        configuration.httpVersion = http1Only ? .http1Only : .automatic
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(1, http1ConnectionsPerHost))
        // The upload machine retries with its own policy, and must see a refused certificate at
        // once rather than after the pool's retries until the connect timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        if !tls.pins.isEmpty {
            configuration.http1_1ConnectionDebugInitializer = tls.checkPins
            configuration.http2ConnectionDebugInitializer = tls.checkPins
        }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func send(_ request: TransportRequest, progress: @escaping @Sendable (Int64) -> Void) async throws -> TransportResponse {
        var http = HTTPClientRequest(url: request.url.absoluteString)
        http.method = HTTPMethod(rawValue: request.method.rawValue)
        http.headers = HTTPHeaders(fields: request.headerFields)
        switch request.body {
        case nil:
            return try await execute(http)
        case .bytes(let bytes):
            http.body = .bytes(ByteBuffer(bytes: bytes))
            let response = try await execute(http)
            progress(Int64(bytes.count))
            return response
        case .file(let path, let range) where request.url.scheme?.lowercased() == "http":
            return try await FileRegionRequest(client: client, pieceLength: 256 * 1024)
                .send(request, path: path, range: range, progress: progress)
        case .file(let path, let range):
            return try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { handle in
                let chunks = handle.readChunks(in: range, chunkLength: .kibibytes(256))
                http.body = .stream(ProgressReportingSequence(base: chunks, progress: progress), length: .known(Int64(range.count)))
                return try await execute(http)
            }
        }
    }

    private func execute(_ request: HTTPClientRequest) async throws -> TransportResponse {
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .hours(48))
        } catch {
            throw ClientTLSOptions.trustFailure(error) ?? error
        }
        var body: [UInt8] = []
        for try await buffer in response.body where body.count < 65_536 {
            body += buffer.readableBytesView.prefix(65_536 - body.count)
        }
        return TransportResponse(
            status: try TransportResponse.status(code: Int(response.status.code), reasonPhrase: response.status.reasonPhrase),
            headerFields: HTTPFields(nioHeaders: response.headers),
            body: body,
            httpVersion: HTTPProtocolVersion(response.version)
        )
    }
}

extension HTTPProtocolVersion {
    init(_ version: HTTPVersion) {
        self.init(major: version.major, minor: version.minor)
    }
}

extension HTTPHeaders {
    /// The fields, in order, as NIO headers.
    init(fields: HTTPFields) {
        self.init(fields.map { ($0.name.rawName, $0.value) })
    }
}

extension HTTPFields {
    /// NIO headers as fields, in order; a header whose name is not a valid token is dropped.
    init(nioHeaders headers: HTTPHeaders) {
        self.init(headers.compactMap { header in HTTPField.Name(header.name).map { HTTPField(name: $0, value: header.value) } })
    }
}

/// Passes buffers through, reporting the running byte count as each is pulled by the client
/// (which pulls only after writing the previous one: the count follows the socket).
struct ProgressReportingSequence<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable where Base.Element == ByteBuffer {
    typealias Element = ByteBuffer
    let base: Base
    let progress: @Sendable (Int64) -> Void

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        let progress: @Sendable (Int64) -> Void
        var total: Int64 = 0

        mutating func next() async throws -> ByteBuffer? {
            guard let buffer = try await base.next() else { return nil }
            total += Int64(buffer.readableBytes)
            progress(total)
            return buffer
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator(), progress: progress)
    }
}
