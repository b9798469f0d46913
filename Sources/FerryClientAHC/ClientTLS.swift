import AsyncHTTPClient
import Crypto
import FerryClient
import Foundation
import NIOCore
import NIOSSL

/// How the client verifies an HTTPS server: the system's trust store or a CA file of its own
/// (`--cacert`), the host name, the validity dates, and optionally public-key pins, as mobile
/// apps pin. A failure is a `TransportTrustError`, never retried.
public struct ClientTLSOptions: Sendable, Equatable {
    /// PEM certificates trusted *instead of* the system store (like curl's `--cacert`).
    public var caFile: String?
    /// Base64 SHA-256 digests of the SubjectPublicKeyInfo of acceptable server keys (optionally
    /// written `sha256/BASE64`). When any is set, the server's certificate must pass the usual
    /// verification *and* its public key must match one of them: pin the current key and a
    /// backup key, so that a renewal with a new key does not lock clients out.
    public var pins: [String]

    public init(caFile: String? = nil, pins: [String] = []) {
        self.caFile = caFile
        self.pins = pins.map { $0.hasPrefix("sha256/") ? String($0.dropFirst("sha256/".count)) : $0 }
    }

    /// The SHA-256 pin (Base64) of a certificate's public key.
    public static func pin(of certificate: NIOSSLCertificate) throws -> String {
        let spki = try certificate.extractPublicKey().toSPKIBytes()
        return Data(SHA256.hash(data: spki)).base64EncodedString()
    }

    /// A TLS configuration for AsyncHTTPClient: TLS 1.2 or later, full verification.
    func tlsConfiguration() throws(TransportTrustError) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = .fullVerification
        if let caFile {
            do {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw TransportTrustError("cannot read CA certificates from \(caFile): \(error)")
            }
        }
        for pin in pins where Data(base64Encoded: pin)?.count != SHA256.byteCount {
            throw TransportTrustError("a pin is the Base64 SHA-256 of a public key (44 characters), not \(pin)")
        }
        return configuration
    }

    /// Checks the pins on a new connection, once its TLS handshake is done and before any
    /// request goes out on it (AsyncHTTPClient's connection initializers).
    @Sendable
    func checkPins(_ channel: any Channel) -> EventLoopFuture<Void> {
        guard !pins.isEmpty else { return channel.eventLoop.makeSucceededVoidFuture() }
        return channel.eventLoop.makeCompletedFuture {
            // Plain http has no certificate to pin: the URL's scheme is the caller's choice.
            guard let handler = try? channel.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self) else { return }
            guard let certificate = handler.peerCertificate else { throw TransportTrustError("the server presented no certificate") }
            let pin = try Self.pin(of: certificate)
            guard pins.contains(pin) else {
                throw TransportTrustError("the server's public key (sha256/\(pin)) matches no pin")
            }
        }
    }

    /// The trust failure an error from AsyncHTTPClient stands for, if it is one.
    static func trustFailure(_ error: any Error) -> TransportTrustError? {
        if let error = error as? TransportTrustError { return error }
        if let error = error as? NIOSSLExtraError, error == .failedToValidateHostname {
            return TransportTrustError("the certificate does not cover this host name (\(error))")
        }
        if let error = error as? NIOSSLError {
            switch error {
            case .handshakeFailed(let reason):
                let text = String(describing: reason)
                // BoringSSL's CERTIFICATE_VERIFY_FAILED: unknown CA, expired, not yet valid, bad chain.
                if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("certificate verify failed") {
                    return TransportTrustError("the server's certificate is not trusted (unknown CA, expired or invalid): \(text)")
                }
            case .unableToValidateCertificate, .noCertificateToValidate, .cannotMatchULabel:
                return TransportTrustError("the server's certificate cannot be validated: \(error)")
            default:
                break
            }
        }
        return nil
    }
}

/// AsyncHTTPClient's client, named for callers that import only FerryClientAHC.
public typealias UploadHTTPClient = HTTPClient
