import FerryCore
import Foundation
import JWTKit
import Synchronization

/// Verifies `Authorization: Bearer <JWT>` (HS256, RS256, ES256; keys from the configuration
/// or a JWKS file) and turns its claims into a `Principal` (docs/business.md).
public final class JWTAuthenticator: Authenticator {
    /// Where the keys come from; validated once at start-up by `make`.
    public struct Configuration: Sendable {
        /// Shared secret of HS256 tokens (at least 32 bytes).
        public var hs256Secret: String?
        /// PEM public keys (RSA, 2048 bits or more, for RS256; P-256 for ES256).
        public var publicKeysPEM: [String]
        /// A JSON Web Key Set; tokens pick a key by `kid`.
        public var jwksJSON: String?
        /// Required `iss`, if set.
        public var issuer: String?
        /// Required among `aud`, if set.
        public var audience: String?

        public init(hs256Secret: String? = nil, publicKeysPEM: [String] = [], jwksJSON: String? = nil, issuer: String? = nil, audience: String? = nil) {
            self.hs256Secret = hs256Secret
            self.publicKeysPEM = publicKeysPEM
            self.jwksJSON = jwksJSON
            self.issuer = issuer
            self.audience = audience
        }

        public var hasKeys: Bool { hs256Secret != nil || !publicKeysPEM.isEmpty || jwksJSON != nil }
    }

    /// One key collection per signature algorithm (`HS256`, `RS256`, `ES256`, and what a JWKS
    /// names): a token is verified only with keys of the algorithm its header declares, and a
    /// header naming any other algorithm (`none`, `HS512`, …) is refused.
    let keys: [String: JWTKeyCollection]
    let configuration: Configuration
    /// Tokens already verified, with their validity window: a mobile client sends the same token
    /// on every request of an upload, and verifying (decoding, HMAC or RSA) costs far more than
    /// a lookup. Bounded; time is checked on every use.
    let verified = Mutex<[String: Verified]>([:])
    static let cacheCapacity = 10_000

    struct Verified {
        var principal: Principal
        var notBefore: Date?
        var expires: Date
    }

    private init(keys: [String: JWTKeyCollection], configuration: Configuration) {
        self.keys = keys
        self.configuration = configuration
    }

    /// Loads the keys; throws a message naming the key that is unusable.
    public static func make(_ configuration: Configuration) async throws(FerryError) -> JWTAuthenticator {
        var keys: [String: JWTKeyCollection] = [:]
        func collection(_ algorithm: String) -> JWTKeyCollection {
            if let existing = keys[algorithm] { return existing }
            let made = JWTKeyCollection()
            keys[algorithm] = made
            return made
        }
        if let secret = configuration.hs256Secret {
            guard secret.utf8.count >= 32 else {
                throw FerryError(.internalError, "hs256-secret must be at least 32 bytes long")
            }
            await collection("HS256").add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: "ferry-hs256")
        }
        for (index, pem) in configuration.publicKeysPEM.enumerated() {
            let kid = JWKIdentifier(string: "ferry-pem-\(index)")
            if let rsa = try? Insecure.RSA.PublicKey(pem: pem) {
                await collection("RS256").add(rsa: rsa, digestAlgorithm: .sha256, kid: kid)
            } else if let ec = try? ES256PublicKey(pem: pem) {
                await collection("ES256").add(ecdsa: ec, kid: kid)
            } else {
                throw FerryError(.internalError, "public key \(index + 1) is neither an RSA (2048 bits or more) nor a P-256 public key in PEM")
            }
        }
        if let jwks = configuration.jwksJSON {
            do {
                for (algorithm, set) in try Self.splitByAlgorithm(jwks) {
                    try await collection(algorithm).add(jwksJSON: set)
                }
            } catch {
                throw FerryError(.internalError, "the JWKS file holds no usable key set", underlying: error)
            }
        }
        return JWTAuthenticator(keys: keys, configuration: configuration)
    }

    /// A JWKS split into one key set per algorithm: a key's `alg`, else the one its type implies.
    static func splitByAlgorithm(_ jwks: String) throws -> [String: String] {
        struct Malformed: Error {}
        guard let object = try JSONSerialization.jsonObject(with: Data(jwks.utf8)) as? [String: Any],
            let list = object["keys"] as? [[String: Any]], !list.isEmpty
        else { throw Malformed() }
        var groups: [String: [[String: Any]]] = [:]
        for key in list {
            let implied: String?
            switch key["kty"] as? String {
            case "RSA": implied = "RS256"
            case "EC": implied = "ES256"
            case "oct": implied = "HS256"
            case "OKP": implied = "EdDSA"
            default: implied = nil
            }
            guard let algorithm = key["alg"] as? String ?? implied else { throw Malformed() }
            groups[algorithm, default: []].append(key)
        }
        return try groups.mapValues { group in
            String(decoding: try JSONSerialization.data(withJSONObject: ["keys": group]), as: UTF8.self)
        }
    }

    /// The `alg` of a compact JWS header; nil when the header cannot be read.
    static func headerAlgorithm(_ token: String) -> String? {
        guard let first = token.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false).first,
            first.utf8.count <= 4096
        else { return nil }
        var base64 = first.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64),
            let header = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return header["alg"] as? String
    }

    public func authenticate(authorization: String?) async throws(FerryError) -> Principal {
        guard let authorization else { return .anonymous }
        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw FerryError(.unauthorized, "send Authorization: Bearer <token>")
        }
        let token = String(parts[1]).trimmingCharacters(in: .whitespaces)
        let now = Date()
        if let hit = verified.withLock({ $0[token] }) {
            guard now < hit.expires, (hit.notBefore ?? .distantPast) <= now else {
                verified.withLock { _ = $0.removeValue(forKey: token) }
                throw FerryError(.unauthorized, "the token is malformed, expired or not signed by a trusted key")
            }
            return hit.principal
        }
        guard let algorithm = Self.headerAlgorithm(token), let collection = keys[algorithm] else {
            throw FerryError(.unauthorized, "the token's algorithm is not one this server's keys use")
        }
        let claims: FerryClaims
        do {
            claims = try await collection.verify(token, as: FerryClaims.self, iteratingKeys: true)
        } catch {
            throw FerryError(.unauthorized, "the token is malformed, expired or not signed by a trusted key", underlying: error)
        }
        if let issuer = configuration.issuer, claims.iss?.value != issuer {
            throw FerryError(.unauthorized, "the token was not issued by \(issuer)")
        }
        if let audience = configuration.audience, !(claims.aud?.value.contains(audience) ?? false) {
            throw FerryError(.unauthorized, "the token is not meant for \(audience)")
        }
        let scenarios = claims.scenarios.map(Set.init)
        let principal = Principal(
            subject: claims.sub.value,
            scenarios: scenarios?.contains("*") == true ? nil : scenarios ?? [],
            limits: Quotas(
                maxSize: claims.limits?.maxSize,
                openUploads: claims.limits?.openUploads,
                openBytes: claims.limits?.openBytes,
                creationsPerMinute: claims.limits?.creationsPerMinute
            )
        )
        verified.withLock { cache in
            if cache.count >= Self.cacheCapacity {
                // Drop the expired ones, and if that is not enough, a slice of the rest.
                cache = cache.filter { $0.value.expires > now }
                if cache.count >= Self.cacheCapacity {
                    for key in cache.keys.prefix(Self.cacheCapacity / 10) { cache.removeValue(forKey: key) }
                }
            }
            cache[token] = Verified(principal: principal, notBefore: claims.nbf?.value, expires: claims.exp.value)
        }
        return principal
    }
}

/// The claims Ferry reads. `sub` and `exp` are required; `scenarios` lists what the token may
/// use (`["*"]` for all; absent for none).
struct FerryClaims: JWTPayload {
    struct Limits: Codable, Sendable {
        var maxSize: Int64?
        var openUploads: Int?
        var openBytes: Int64?
        var creationsPerMinute: Int?
    }

    var sub: SubjectClaim
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var iss: IssuerClaim?
    var aud: AudienceClaim?
    var scenarios: [String]?
    var limits: Limits?

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        try nbf?.verifyNotBefore()
        guard !sub.value.isEmpty else { throw JWTError.claimVerificationFailure(failedClaim: sub, reason: "empty subject") }
    }
}
