import Foundation

/// Throwaway certificates for TLS tests, made by the `openssl` command in a new temporary folder.
///
/// One call makes them all (a few hundred milliseconds): a CA, and leaves signed by it for
/// `localhost` and `127.0.0.1` (the one a server normally uses, a renewed one for reload tests,
/// an expired one), a leaf for another name, and a leaf signed by a CA that clients are not
/// given. Keys are EC P-256, files are PEM; a client trusts `caCertificate` and nothing else.
///
/// ```swift
/// let certificates = try await TestCertificates.make()
/// defer { certificates.remove() }
/// let files = TLSFiles(certificateChain: certificates.leaf.chain, privateKey: certificates.leaf.key)
/// ```
public struct TestCertificates: Sendable {
    /// A certificate chain file (leaf first) and the leaf's private key, ready for a server.
    public struct Identity: Sendable, Equatable {
        /// PEM certificate chain, leaf first.
        public let chain: String
        /// PEM private key of the chain's leaf.
        public let key: String
        /// The leaf's serial number.
        public let serial: Int
    }

    /// The folder that holds every file; `remove()` deletes it.
    public let directory: String
    /// The CA clients trust (PEM): the trust root of every client in the tests.
    public let caCertificate: String
    /// The CA that signed `unknownCA` (PEM); no client is given it unless a test says so.
    public let otherCACertificate: String

    /// The server's certificate: `localhost` and `127.0.0.1`, signed by the CA; the chain file
    /// holds the leaf alone.
    public let leaf: Identity
    /// The same leaf and key, with the CA certificate after the leaf in the chain file.
    public let leafWithCA: Identity
    /// A renewal of `leaf`: the same names and CA, another key and serial.
    public let renewed: Identity
    /// The same names and CA, but no longer valid (notAfter a day in the past).
    public let expired: Identity
    /// Signed by the CA, for `wrong.example` only.
    public let wrongName: Identity
    /// `localhost` and `127.0.0.1`, signed by the other CA.
    public let unknownCA: Identity

    /// SHA-256 of the DER SubjectPublicKeyInfo of `leaf`, Base64 (an HPKP-style pin).
    public let leafPin: String
    /// The same pin for `renewed`.
    public let renewedPin: String

    /// Makes every certificate in a new folder under the temporary directory. The `openssl`
    /// processes run on a thread of their own, never on the caller's.
    public static func make() async throws -> TestCertificates {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try makeBlocking() })
            }
        }
    }

    /// Deletes the folder and every file in it.
    public func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The names the leaves are for (all but `wrongName`).
    public static let names = ["localhost", "127.0.0.1"]

    /// An `openssl` command failed.
    public struct OpenSSLFailure: Error, CustomStringConvertible {
        public let arguments: [String]
        public let status: Int32
        public let output: String

        public var description: String { "openssl \(arguments.joined(separator: " ")) exited with \(status): \(output)" }
    }

    static let extensions = """
        [req]
        distinguished_name = dn
        prompt = no
        [dn]
        CN = unused
        [ca]
        basicConstraints = critical, CA:TRUE
        keyUsage = critical, keyCertSign, cRLSign
        subjectKeyIdentifier = hash
        [server]
        basicConstraints = critical, CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = serverAuth
        subjectAltName = DNS:localhost, IP:127.0.0.1
        [wrong]
        basicConstraints = critical, CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = serverAuth
        subjectAltName = DNS:wrong.example

        """

    static func makeBlocking() throws -> TestCertificates {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-certs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        do {
            return try Maker(directory: directory).make()
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    struct Maker {
        let directory: String
        var config: String { file("openssl.cnf") }

        func file(_ name: String) -> String { directory + "/" + name }

        func make() throws -> TestCertificates {
            try Data(TestCertificates.extensions.utf8).write(to: URL(fileURLWithPath: config))
            let ca = try authority("ca", name: "Ferry Test CA")
            let other = try authority("other-ca", name: "Ferry Unknown CA")
            let leaf = try issue("leaf", serial: 0x1001, by: ca)
            let renewed = try issue("renewed", serial: 0x1002, by: ca)
            let expired = try issue("expired", serial: 0x1003, by: ca, days: -1)
            let wrongName = try issue("wrong-name", serial: 0x1004, by: ca, commonName: "wrong.example", section: "wrong")
            let unknown = try issue("unknown-ca", serial: 0x2001, by: other)
            let withCA = file("leaf-with-ca.pem")
            let bundle = try Data(contentsOf: URL(fileURLWithPath: leaf.chain)) + Data(contentsOf: URL(fileURLWithPath: ca.certificate))
            try bundle.write(to: URL(fileURLWithPath: withCA))
            return TestCertificates(
                directory: directory,
                caCertificate: ca.certificate,
                otherCACertificate: other.certificate,
                leaf: leaf,
                leafWithCA: Identity(chain: withCA, key: leaf.key, serial: leaf.serial),
                renewed: renewed,
                expired: expired,
                wrongName: wrongName,
                unknownCA: unknown,
                leafPin: try pin(leaf),
                renewedPin: try pin(renewed)
            )
        }

        struct Authority {
            var certificate: String
            var key: String
        }

        /// A self-signed CA certificate and its key.
        func authority(_ base: String, name: String) throws -> Authority {
            let made = Authority(certificate: file(base + ".pem"), key: file(base + ".key"))
            try openssl(
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
                "-keyout", made.key, "-out", made.certificate, "-subj", "/CN=\(name)", "-days", "30",
                "-config", config, "-extensions", "ca"
            )
            return made
        }

        /// A new key and a leaf for it signed by `ca`. `x509 -req` (not `req -x509`, which refuses
        /// it) takes a negative number of days: notAfter in the past.
        func issue(_ base: String, serial: Int, by ca: Authority, days: Int = 30, commonName: String = "localhost", section: String = "server") throws -> Identity {
            let identity = Identity(chain: file(base + ".pem"), key: file(base + ".key"), serial: serial)
            let request = file(base + ".csr")
            try openssl(
                "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
                "-keyout", identity.key, "-out", request, "-subj", "/CN=\(commonName)", "-config", config
            )
            try openssl(
                "x509", "-req", "-in", request, "-CA", ca.certificate, "-CAkey", ca.key, "-set_serial", String(serial),
                "-days", String(days), "-extfile", config, "-extensions", section, "-out", identity.chain
            )
            return identity
        }

        /// `openssl pkey -pubout -outform DER | openssl dgst -sha256 -binary | base64`.
        func pin(_ identity: Identity) throws -> String {
            let spki = identity.key + ".spki.der"
            let digest = identity.key + ".spki.sha256"
            try openssl("pkey", "-in", identity.key, "-pubout", "-outform", "DER", "-out", spki)
            try openssl("dgst", "-sha256", "-binary", "-out", digest, spki)
            return try Data(contentsOf: URL(fileURLWithPath: digest)).base64EncodedString()
        }

        func openssl(_ arguments: String...) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["openssl"] + arguments
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            let text = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw OpenSSLFailure(arguments: arguments, status: process.terminationStatus, output: String(decoding: text, as: UTF8.self))
            }
        }
    }
}
