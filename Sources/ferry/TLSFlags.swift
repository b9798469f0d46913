import ArgumentParser
import FerryClient
import FerryClientAHC

/// How `ferry put/get/status/stats` connect: which HTTPS servers they trust, and HTTP/2 or not.
struct TLSFlags: ParsableArguments {
    @Option(help: "PEM file of the CA certificates to trust instead of the system's (https).")
    var cacert: String?

    @Option(help: "Accept only a server whose public key has this SHA-256 pin: sha256/BASE64 of its SubjectPublicKeyInfo (repeatable: pin a backup key too).")
    var pin: [String] = []

    @Flag(help: "Speak HTTP/1.1 only, even to a server that offers HTTP/2 (comparisons, broken middleboxes).")
    var http1 = false

    /// The HTTP client, verifying as told; a CA file that cannot be read or a malformed pin stops here.
    func makeClient(http1ConnectionsPerHost: Int = 8) throws -> UploadHTTPClient {
        do {
            return try AsyncHTTPClientTransport.makeClient(
                http1ConnectionsPerHost: http1ConnectionsPerHost, tls: ClientTLSOptions(caFile: cacert, pins: pin), http1Only: http1
            )
        } catch {
            throw ValidationError("\(error)")
        }
    }
}
