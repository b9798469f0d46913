import AsyncHTTPClient
import Crypto
import FerryHTTP
import FerryServer
import FerryTestSupport
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

/// HTTPS for the live tests: servers with a test certificate, AsyncHTTPClient clients that trust
/// the test CA and nothing else, and a raw TLS connection that reports the server's certificate.
enum TLSTest {
    /// The HTTP versions a TLS client asks for.
    enum Version: String, Sendable, CaseIterable, CustomStringConvertible {
        /// ALPN offers h2 and http/1.1; the server picks h2.
        case h2
        /// ALPN offers http/1.1 only.
        case h1

        var expected: NIOHTTP1.HTTPVersion { self == .h2 ? .http2 : .http1_1 }
        var census: ConnectionCensus.HTTPProtocol { self == .h2 ? .http2 : .http1 }
        var description: String { rawValue }
    }

    /// A TLS server on an ephemeral port serving `identity`, configured by `configure` after.
    static func withServer<T>(
        _ identity: TestCertificates.Identity,
        configure: (inout FerryServerConfiguration) -> Void = { _ in },
        _ body: (TestServer) async throws -> T
    ) async throws -> T {
        try await TestServer.with(configure: { configuration in
            configuration.http.transport.tls = TLSFiles(certificateChain: identity.chain, privateKey: identity.key)
            configuration.ioThreads = 2
            configuration.statistics = nil
            configure(&configuration)
        }, body)
    }

    /// A client trusting only `caFile`, speaking `version`; shut down after `body`.
    static func withClient<T>(
        trusting caFile: String,
        _ version: Version,
        configure: (inout HTTPClient.Configuration) -> Void = { _ in },
        _ body: (HTTPClient) async throws -> T
    ) async throws -> T {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.httpVersion = version == .h2 ? .automatic : .http1Only
        configuration.decompression = .disabled
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(20))
        configure(&configuration)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            let value = try await body(client)
            try await client.shutdown()
            return value
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    /// SHA-256 of a certificate's DER SubjectPublicKeyInfo, Base64: what `TestCertificates` pins.
    static func pin(_ certificate: NIOSSLCertificate) throws -> String {
        Data(SHA256.hash(data: try certificate.extractPublicKey().toSPKIBytes())).base64EncodedString()
    }

    /// Opens a new TLS connection to the server (verifying its certificate against `caFile` for
    /// `localhost`), completes the handshake, and returns the certificate the server presented.
    static func peerCertificate(port: Int, trusting caFile: String) async throws -> NIOSSLCertificate {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
        let context = try NIOSSLContext(configuration: tls)
        let handshake = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: NIOSSLCertificate.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                        try channel.pipeline.syncOperations.addHandler(HandshakeWaiter(promise: handshake))
                    }
                }
                .connect(host: "127.0.0.1", port: port).get()
        } catch {
            handshake.fail(error)
            throw error
        }
        defer { channel.close(promise: nil) }
        return try await handshake.futureResult.get()
    }

    /// Reports the peer's certificate once the TLS handshake completed, or the error that ended it.
    private final class HandshakeWaiter: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<NIOSSLCertificate>

        init(promise: EventLoopPromise<NIOSSLCertificate>) { self.promise = promise }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case .handshakeCompleted = event as? TLSUserEvent {
                do {
                    let handler = try context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self)
                    if let certificate = handler.peerCertificate {
                        promise.succeed(certificate)
                    } else {
                        promise.fail(ChannelError.inappropriateOperationForState)
                    }
                } catch {
                    promise.fail(error)
                }
            }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ChannelError.eof)
            context.fireChannelInactive()
        }
    }
}

/// The protocol table's transport over AsyncHTTPClient: one request each, over the client's
/// pooled connection; every answer must have come over `version`.
struct LiveTableTransport: TableTransport {
    struct WrongVersion: Error, CustomStringConvertible {
        let version: NIOHTTP1.HTTPVersion
        var description: String { "the answer came over \(version)" }
    }

    let client: HTTPClient
    /// `https://localhost:<port>`.
    let origin: String
    let version: TLSTest.Version

    func send(_ method: String, _ path: String, _ fields: [(String, String)], body: [UInt8]) async throws -> TableAnswer {
        var request = HTTPClientRequest(url: origin + path)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in fields { request.headers.add(name: name, value: value) }
        if !body.isEmpty { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await client.execute(request, timeout: .seconds(20))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        guard response.version == version.expected else { throw WrongVersion(version: response.version) }
        return TableAnswer(status: Int(response.status.code), fields: HTTPFields(response.headers), body: Array(bytes.readableBytesView))
    }
}

extension HTTPFields {
    /// AsyncHTTPClient's header list as HTTPTypes fields, in order.
    init(_ headers: HTTPHeaders) {
        self.init()
        for header in headers {
            if let name = HTTPField.Name(header.name) { append(HTTPField(name: name, value: header.value)) }
        }
    }
}
