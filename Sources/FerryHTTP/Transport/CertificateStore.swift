import FerryCore
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// The server's TLS context, built from `TLSFiles` and rebuilt on `reload()` (SIGHUP).
///
/// Each new connection takes the context current when it is accepted; a connection keeps the
/// context it started with, so a renewed certificate never cuts an upload in flight. A reload
/// that fails (missing file, bad PEM, a key that does not match the certificate) changes
/// nothing: the old certificate stays in use and the error says why.
public final class CertificateStore: Sendable {
    public let files: TLSFiles
    private let state: Mutex<Loaded>

    struct Loaded: @unchecked Sendable {
        // NIOSSLContext is thread-safe and immutable once built.
        var context: NIOSSLContext
        var summary: CertificateSummary
    }

    /// What a loaded certificate is, for logs and `/healthz`-style reports.
    public struct CertificateSummary: Sendable, Equatable, CustomStringConvertible {
        public var subject: String
        /// Seconds since 1970 after which the leaf certificate is no longer valid.
        public var notValidAfter: Int64
        public var chainLength: Int

        public var description: String { "\(subject), \(chainLength) certificate(s), valid until \(notValidAfter) (Unix time)" }
    }

    /// Reads the files now: a server does not start with a certificate it cannot use.
    public init(files: TLSFiles) throws(ConfigurationError) {
        self.files = files
        self.state = Mutex(try Self.load(files))
    }

    /// The context for a connection being accepted now.
    var context: NIOSSLContext { state.withLock { $0.context } }

    public var summary: CertificateSummary { state.withLock { $0.summary } }

    /// Reads the files again, off the event loops; on failure the current certificate stays.
    @discardableResult
    public func reload() async throws -> CertificateSummary {
        let files = self.files
        let loaded = try await NIOThreadPool.singleton.runIfActive { try Self.load(files) }
        state.withLock { $0 = loaded }
        return loaded.summary
    }

    static func load(_ files: TLSFiles) throws(ConfigurationError) -> Loaded {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certificateChain)
        } catch {
            throw ConfigurationError("tls-cert", "cannot read a PEM certificate chain from \(files.certificateChain): \(error)")
        }
        guard let leaf = chain.first else {
            throw ConfigurationError("tls-cert", "\(files.certificateChain) holds no certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: files.privateKey, format: .pem)
        } catch {
            throw ConfigurationError("tls-key", "cannot read a PEM private key from \(files.privateKey): \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv12
        // A connection the server closes (after a refused body, on shutdown) waits this long at
        // most for the client's close_notify: with NIOSSL's 5 s default, HTTP/1.1 connections
        // closed after a refused body sometimes stayed open (and held a graceful shutdown) 5 s.
        configuration.shutdownTimeout = .seconds(1)
        configuration.applicationProtocols = ["h2", "http/1.1"]
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw ConfigurationError("tls-key", "the key in \(files.privateKey) does not fit the certificate in \(files.certificateChain): \(error)")
        }
        let summary = CertificateSummary(
            subject: leaf.description,
            notValidAfter: Int64(leaf.notValidAfter),
            chainLength: chain.count
        )
        return Loaded(context: context, summary: summary)
    }
}
