import FerryCore
import Foundation
import JWTKit
import Testing

@testable import FerryAuth

/// The claims a test token carries; every one optional, so a token can lack what Ferry requires.
/// Times are seconds from now, resolved when the token is signed.
struct TokenClaims: Sendable {
    var sub: String? = "alice"
    var exp: Double? = 600
    var nbf: Double?
    var iss: String?
    var aud: [String]?
    var scenarios: [String]?
    var limits: Limits?

    struct Limits: Codable, Sendable {
        var maxSize: Int64?
        var openUploads: Int?
        var openBytes: Int64?
        var creationsPerMinute: Int?
    }

    func payload(now: Date) -> Payload {
        Payload(
            sub: sub.map(SubjectClaim.init(value:)), exp: exp.map { ExpirationClaim(value: now.addingTimeInterval($0)) },
            nbf: nbf.map { NotBeforeClaim(value: now.addingTimeInterval($0)) }, iss: iss.map(IssuerClaim.init(value:)),
            aud: aud.map(AudienceClaim.init(value:)), scenarios: scenarios, limits: limits
        )
    }

    /// Signs whatever it is given: the checks are the authenticator's.
    struct Payload: JWTPayload {
        var sub: SubjectClaim?
        var exp: ExpirationClaim?
        var nbf: NotBeforeClaim?
        var iss: IssuerClaim?
        var aud: AudienceClaim?
        var scenarios: [String]?
        var limits: Limits?

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }
}

/// The keys of the tests: the server's, and a stranger's of each kind.
enum TestKeys {
    /// 64 bytes and more: long enough for HS512 too (jwt-kit asserts a key as long as the hash).
    static let secret = String(repeating: "0123456789abcdef", count: 4) + "-server"
    static let otherSecret = String(repeating: "0123456789abcdef", count: 4) + "-stranger"
    static let ec = ES256PrivateKey()
    static let otherEC = ES256PrivateKey()

    /// A compact JWS with this header and payload, and `signature` as its third part.
    static func compact(header: String, payload: String, signature: String = "") -> String {
        [header, payload].map { base64URL(Data($0.utf8)) }.joined(separator: ".") + "." + signature
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// How a row's token is made.
enum Signer: Sendable {
    /// HS256 with the server's secret.
    case hs256
    /// HS256 with a secret the server does not know.
    case hs256OtherSecret
    /// HS512 with the server's own secret: an algorithm the server's keys do not use.
    case hs512
    /// HS256 keyed with the server's ES256 public key in PEM (the algorithm-confusion attack).
    case hs256KeyedWithPublicPEM
    /// `alg: none`, no signature.
    case unsigned
    /// ES256 with the private half of the server's public key.
    case es256
    /// ES256 with another P-256 key.
    case es256OtherKey

    func sign(_ claims: TokenClaims) async throws -> String {
        let payload = claims.payload(now: Date())
        let keys = JWTKeyCollection()
        switch self {
        case .hs256: await keys.add(hmac: HMACKey(from: TestKeys.secret), digestAlgorithm: .sha256)
        case .hs256OtherSecret: await keys.add(hmac: HMACKey(from: TestKeys.otherSecret), digestAlgorithm: .sha256)
        case .hs512: await keys.add(hmac: HMACKey(from: TestKeys.secret), digestAlgorithm: .sha512)
        case .hs256KeyedWithPublicPEM: await keys.add(hmac: HMACKey(from: TestKeys.ec.publicKey.pemRepresentation), digestAlgorithm: .sha256)
        case .es256: await keys.add(ecdsa: TestKeys.ec)
        case .es256OtherKey: await keys.add(ecdsa: TestKeys.otherEC)
        case .unsigned:
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .secondsSince1970
            let body = String(decoding: try encoder.encode(payload), as: UTF8.self)
            return TestKeys.compact(header: #"{"alg":"none","typ":"JWT"}"#, payload: body)
        }
        return try await keys.sign(payload)
    }
}

/// Which keys (and requirements) the server is configured with.
enum ServerKeys: Sendable {
    case hs256
    case es256
    case both
    /// HS256, requiring `iss` = `ferry-issuer` and `aud` containing `ferry`.
    case hs256IssuerAudience

    var configuration: JWTAuthenticator.Configuration {
        switch self {
        case .hs256: .init(hs256Secret: TestKeys.secret)
        case .es256: .init(publicKeysPEM: [TestKeys.ec.publicKey.pemRepresentation])
        case .both: .init(hs256Secret: TestKeys.secret, publicKeysPEM: [TestKeys.ec.publicKey.pemRepresentation])
        case .hs256IssuerAudience: .init(hs256Secret: TestKeys.secret, issuer: "ferry-issuer", audience: "ferry")
        }
    }
}

/// Which check refused a token: every refusal is `ERR_UNAUTHORIZED`; the message tells them apart.
enum Refusal: String, Sendable {
    case scheme = "send Authorization: Bearer"
    case algorithm = "algorithm is not one this server's keys use"
    case verification = "malformed, expired or not signed by a trusted key"
    case issuer = "was not issued by"
    case audience = "is not meant for"
}

@Suite("JWT authenticator: a token in, a principal or a refusal out")
struct JWTAuthenticatorTests {
    /// What is sent as `Authorization`.
    enum Credential: Sendable {
        case absent
        case raw(String)
        /// `<scheme> <token>`.
        case token(scheme: String, Signer, TokenClaims)

        static func bearer(_ signer: Signer, _ claims: TokenClaims = TokenClaims()) -> Self { .token(scheme: "Bearer", signer, claims) }
    }

    enum Expected: Equatable, Sendable {
        case principal(Principal)
        case refused(Refusal)
    }

    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var keys: ServerKeys = .hs256
        var credential: Credential
        var expected: Expected
        var testDescription: String { name }
    }

    static let alice = Principal(subject: "alice", scenarios: [])

    static let rows: [Row] = [
        Row(name: "no Authorization is anonymous", credential: .absent, expected: .principal(.anonymous)),
        Row(name: "valid HS256", credential: .bearer(.hs256), expected: .principal(alice)),
        Row(name: "the scheme is case-insensitive", credential: .token(scheme: "bEaReR", .hs256, TokenClaims()), expected: .principal(alice)),
        Row(name: "spaces after the scheme", credential: .token(scheme: "Bearer  ", .hs256, TokenClaims()), expected: .principal(alice)),
        Row(name: "valid ES256", keys: .es256, credential: .bearer(.es256), expected: .principal(alice)),
        Row(name: "HS256 and ES256 side by side: HS256", keys: .both, credential: .bearer(.hs256), expected: .principal(alice)),
        Row(name: "HS256 and ES256 side by side: ES256", keys: .both, credential: .bearer(.es256), expected: .principal(alice)),

        Row(name: "another scheme", credential: .token(scheme: "Basic", .hs256, TokenClaims()), expected: .refused(.scheme)),
        Row(name: "a scheme without token", credential: .raw("Bearer"), expected: .refused(.scheme)),
        // The blanks after the first one are the "token": no algorithm can be read from it.
        Row(name: "a scheme and blanks", credential: .raw("Bearer   "), expected: .refused(.algorithm)),
        Row(name: "an empty header", credential: .raw(""), expected: .refused(.scheme)),
        Row(name: "a token without scheme", credential: .raw("eyJhbGciOiJIUzI1NiJ9.e30.x"), expected: .refused(.scheme)),
        Row(name: "a garbled token", credential: .raw("Bearer not-a-jwt"), expected: .refused(.algorithm)),
        Row(name: "a header that is not JSON", credential: .raw("Bearer " + TestKeys.compact(header: "alg", payload: "{}")), expected: .refused(.algorithm)),
        Row(name: "a header without alg", credential: .raw("Bearer " + TestKeys.compact(header: #"{"typ":"JWT"}"#, payload: "{}")),
            expected: .refused(.algorithm)),
        Row(name: "HS256 header, garbled payload and signature",
            credential: .raw("Bearer " + TestKeys.compact(header: #"{"alg":"HS256"}"#, payload: "not json", signature: "AAAA")),
            expected: .refused(.verification)),

        Row(name: "the wrong secret", credential: .bearer(.hs256OtherSecret), expected: .refused(.verification)),
        Row(name: "another ES256 key", keys: .es256, credential: .bearer(.es256OtherKey), expected: .refused(.verification)),
        Row(name: "alg none", credential: .bearer(.unsigned), expected: .refused(.algorithm)),
        Row(name: "alg none, anything claimed", keys: .both, credential: .bearer(.unsigned, TokenClaims(scenarios: ["*"])), expected: .refused(.algorithm)),
        Row(name: "HS512 with the server's secret", credential: .bearer(.hs512), expected: .refused(.algorithm)),
        Row(name: "ES256 on an HS256 server", credential: .bearer(.es256), expected: .refused(.algorithm)),
        Row(name: "HS256 on an ES256 server", keys: .es256, credential: .bearer(.hs256), expected: .refused(.algorithm)),
        Row(name: "HS256 keyed with the ES256 public key", keys: .es256, credential: .bearer(.hs256KeyedWithPublicPEM), expected: .refused(.algorithm)),
        Row(name: "HS256 keyed with the ES256 public key, HS256 configured too", keys: .both, credential: .bearer(.hs256KeyedWithPublicPEM),
            expected: .refused(.verification)),

        Row(name: "expired", credential: .bearer(.hs256, TokenClaims(exp: -60)), expected: .refused(.verification)),
        Row(name: "not yet valid", credential: .bearer(.hs256, TokenClaims(nbf: 3600)), expected: .refused(.verification)),
        Row(name: "valid since a minute", credential: .bearer(.hs256, TokenClaims(nbf: -60)), expected: .principal(alice)),
        Row(name: "no exp", credential: .bearer(.hs256, TokenClaims(exp: nil)), expected: .refused(.verification)),
        Row(name: "no sub", credential: .bearer(.hs256, TokenClaims(sub: nil)), expected: .refused(.verification)),
        Row(name: "an empty sub", credential: .bearer(.hs256, TokenClaims(sub: "")), expected: .refused(.verification)),

        Row(name: "the required issuer and audience", keys: .hs256IssuerAudience,
            credential: .bearer(.hs256, TokenClaims(iss: "ferry-issuer", aud: ["other", "ferry"])), expected: .principal(alice)),
        Row(name: "no issuer", keys: .hs256IssuerAudience, credential: .bearer(.hs256, TokenClaims(aud: ["ferry"])), expected: .refused(.issuer)),
        Row(name: "another issuer", keys: .hs256IssuerAudience, credential: .bearer(.hs256, TokenClaims(iss: "elsewhere", aud: ["ferry"])),
            expected: .refused(.issuer)),
        Row(name: "no audience", keys: .hs256IssuerAudience, credential: .bearer(.hs256, TokenClaims(iss: "ferry-issuer")), expected: .refused(.audience)),
        Row(name: "another audience", keys: .hs256IssuerAudience, credential: .bearer(.hs256, TokenClaims(iss: "ferry-issuer", aud: ["ferry-admin"])),
            expected: .refused(.audience)),
        Row(name: "issuer and audience are not required unless configured", credential: .bearer(.hs256, TokenClaims(iss: "anyone", aud: ["anything"])),
            expected: .principal(alice)),

        Row(name: "no scenarios claim: none", credential: .bearer(.hs256, TokenClaims(scenarios: nil)), expected: .principal(Principal(subject: "alice", scenarios: []))),
        Row(name: "scenarios listed", credential: .bearer(.hs256, TokenClaims(scenarios: ["voice", "images", "voice"])),
            expected: .principal(Principal(subject: "alice", scenarios: ["voice", "images"]))),
        Row(name: "scenarios star: any", credential: .bearer(.hs256, TokenClaims(scenarios: ["*"])), expected: .principal(Principal(subject: "alice", scenarios: nil))),
        Row(name: "star among names: any", credential: .bearer(.hs256, TokenClaims(scenarios: ["voice", "*"])), expected: .principal(Principal(subject: "alice", scenarios: nil))),
        Row(name: "an empty scenario list", credential: .bearer(.hs256, TokenClaims(scenarios: [])), expected: .principal(Principal(subject: "alice", scenarios: []))),
        Row(name: "every limit", credential: .bearer(.hs256, TokenClaims(sub: "bob", scenarios: ["*"], limits: .init(maxSize: 1000, openUploads: 2, openBytes: 5000, creationsPerMinute: 7))),
            expected: .principal(Principal(subject: "bob", scenarios: nil, limits: Quotas(maxSize: 1000, openUploads: 2, openBytes: 5000, creationsPerMinute: 7)))),
        Row(name: "some limits", credential: .bearer(.hs256, TokenClaims(limits: .init(openUploads: 3))),
            expected: .principal(Principal(subject: "alice", scenarios: [], limits: Quotas(openUploads: 3)))),
        Row(name: "an empty limits object", credential: .bearer(.hs256, TokenClaims(limits: .init())), expected: .principal(alice)),
    ]

    @Test(arguments: rows)
    func row(_ row: Row) async throws {
        let authenticator = try await JWTAuthenticator.make(row.keys.configuration)
        let authorization: String?
        switch row.credential {
        case .absent: authorization = nil
        case .raw(let text): authorization = text
        case .token(let scheme, let signer, let claims): authorization = scheme + " " + (try await signer.sign(claims))
        }
        let result: Expected
        do {
            result = .principal(try await authenticator.authenticate(authorization: authorization))
        } catch {
            #expect(error.code == .unauthorized)
            guard let refusal = [Refusal.scheme, .algorithm, .verification, .issuer, .audience].first(where: { error.message.contains($0.rawValue) }) else {
                Issue.record("an unexpected refusal: \(error)")
                return
            }
            result = .refused(refusal)
        }
        #expect(result == row.expected)
    }

    @Test func aVerifiedTokenIsAnsweredFromTheCacheWhileValid() async throws {
        let authenticator = try await JWTAuthenticator.make(ServerKeys.hs256.configuration)
        let token = try await Signer.hs256.sign(TokenClaims(scenarios: ["voice"]))
        let first = try await authenticator.authenticate(authorization: "Bearer " + token)
        #expect(authenticator.verified.withLock { $0[token]?.principal } == first)
        #expect(try await authenticator.authenticate(authorization: "bearer " + token) == first)
        #expect(authenticator.verified.withLock { $0.count } == 1)
    }

    /// Entries are checked against their window on every use: a token that expired (or is not yet
    /// valid) after it was cached is refused, and forgotten.
    @Test(arguments: [
        (notBefore: nil, expires: -1.0),
        (notBefore: 3600.0, expires: 7200.0),
    ])
    func aCachedTokenOutsideItsWindowIsRefusedAndForgotten(_ window: (notBefore: Double?, expires: Double)) async throws {
        let authenticator = try await JWTAuthenticator.make(ServerKeys.hs256.configuration)
        let token = "cached-token"
        let now = Date()
        authenticator.verified.withLock {
            $0[token] = .init(
                principal: Principal(subject: "ghost"), notBefore: window.notBefore.map { now.addingTimeInterval($0) },
                expires: now.addingTimeInterval(window.expires)
            )
        }
        await #expect(throws: FerryError.self) { try await authenticator.authenticate(authorization: "Bearer " + token) }
        #expect(authenticator.verified.withLock { $0[token] } == nil)
    }

    @Test func aCachedTokenInsideItsWindowNeedsNoKey() async throws {
        // The cache is keyed by the whole token: what is in it was verified before.
        let authenticator = try await JWTAuthenticator.make(ServerKeys.hs256.configuration)
        let now = Date()
        authenticator.verified.withLock {
            $0["cached-token"] = .init(principal: Principal(subject: "carol"), notBefore: now.addingTimeInterval(-60), expires: now.addingTimeInterval(600))
        }
        #expect(try await authenticator.authenticate(authorization: "Bearer cached-token") == Principal(subject: "carol"))
    }
}

@Suite("JWT authenticator: keys at start-up")
struct JWTKeyLoadingTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var configuration: JWTAuthenticator.Configuration
        /// The algorithms keys are loaded for; nil when the configuration is refused.
        var algorithms: Set<String>?
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        Row(name: "no keys", configuration: .init(), algorithms: []),
        Row(name: "a 32-byte secret", configuration: .init(hs256Secret: String(repeating: "k", count: 32)), algorithms: ["HS256"]),
        Row(name: "a 31-byte secret", configuration: .init(hs256Secret: String(repeating: "k", count: 31)), algorithms: nil),
        Row(name: "a P-256 public key", configuration: .init(publicKeysPEM: [TestKeys.ec.publicKey.pemRepresentation]), algorithms: ["ES256"]),
        Row(name: "a private key is no public key", configuration: .init(publicKeysPEM: [TestKeys.ec.pemRepresentation]), algorithms: nil),
        Row(name: "a PEM that is not a key", configuration: .init(publicKeysPEM: ["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"]), algorithms: nil),
        Row(name: "a JWKS of an EC key", configuration: .init(jwksJSON: jwks([ecKey])), algorithms: ["ES256"]),
        Row(name: "a JWKS of an EC key, and a secret", configuration: .init(hs256Secret: TestKeys.secret, jwksJSON: jwks([ecKey])),
            algorithms: ["HS256", "ES256"]),
        // JWKS keys are RSA or EC (docs/business.md): jwt-kit reads no symmetric (`oct`) JWK, so
        // a set holding one is refused whole, although `splitByAlgorithm` files it under HS256.
        Row(name: "a JWKS of an oct key", configuration: .init(jwksJSON: jwks([octKey])), algorithms: nil),
        Row(name: "a JWKS of an oct and an EC key", configuration: .init(jwksJSON: jwks([octKey, ecKey])), algorithms: nil),
        Row(name: "a JWKS without keys", configuration: .init(jwksJSON: #"{"keys":[]}"#), algorithms: nil),
        Row(name: "a JWKS that is not JSON", configuration: .init(jwksJSON: "keys"), algorithms: nil),
        Row(name: "a JWKS key of unknown type", configuration: .init(jwksJSON: jwks([#"{"kty":"XYZ","kid":"x"}"#])), algorithms: nil),
    ]

    static let octKey = #"{"kty":"oct","kid":"shared","k":"\#(TestKeys.base64URL(Data(TestKeys.secret.utf8)))"}"#
    static var ecKey: String {
        let parameters = TestKeys.ec.publicKey.parameters!
        return #"{"kty":"EC","crv":"P-256","kid":"ec","x":"\#(parameters.x)","y":"\#(parameters.y)"}"#
    }

    static func jwks(_ keys: [String]) -> String { #"{"keys":[\#(keys.joined(separator: ","))]}"# }

    @Test(arguments: rows)
    func row(_ row: Row) async {
        do {
            let authenticator = try await JWTAuthenticator.make(row.configuration)
            #expect(Set(authenticator.keys.keys) == row.algorithms)
        } catch {
            #expect(error.code == .internalError)
            #expect(row.algorithms == nil, "refused: \(error)")
        }
    }

    @Test func tokensVerifyAgainstJWKSKeys() async throws {
        let authenticator = try await JWTAuthenticator.make(.init(jwksJSON: Self.jwks([Self.ecKey])))
        #expect(try await authenticator.authenticate(authorization: "Bearer " + (try await Signer.es256.sign(TokenClaims()))) == JWTAuthenticatorTests.alice)
        for signer in [Signer.es256OtherKey, .hs256] {
            await #expect(throws: FerryError.self) {
                try await authenticator.authenticate(authorization: "Bearer " + (try await signer.sign(TokenClaims())))
            }
        }
    }

    struct SplitRow: Sendable, CustomTestStringConvertible {
        var name: String
        var keys: [String]
        /// Algorithm -> the kids of its set; nil when the JWKS is refused.
        var expected: [String: [String]]?
        var testDescription: String { name }
    }

    static let splits: [SplitRow] = [
        SplitRow(name: "types imply algorithms", keys: [#"{"kty":"RSA","kid":"r"}"#, #"{"kty":"EC","kid":"e"}"#, #"{"kty":"oct","kid":"o"}"#, #"{"kty":"OKP","kid":"k"}"#],
                 expected: ["RS256": ["r"], "ES256": ["e"], "HS256": ["o"], "EdDSA": ["k"]]),
        SplitRow(name: "alg wins over the type", keys: [#"{"kty":"RSA","alg":"PS256","kid":"p"}"#, #"{"kty":"RSA","kid":"r"}"#, #"{"kty":"EC","alg":"ES384","kid":"e"}"#],
                 expected: ["PS256": ["p"], "RS256": ["r"], "ES384": ["e"]]),
        SplitRow(name: "keys of one algorithm stay in order", keys: [#"{"kty":"oct","kid":"1"}"#, #"{"kty":"oct","kid":"2"}"#], expected: ["HS256": ["1", "2"]]),
        SplitRow(name: "an unknown type without alg", keys: [#"{"kty":"oct","kid":"1"}"#, #"{"kty":"what","kid":"2"}"#], expected: nil),
        SplitRow(name: "no keys", keys: [], expected: nil),
    ]

    @Test(arguments: splits)
    func splitByAlgorithm(_ row: SplitRow) throws {
        let split: [String: String]
        do {
            split = try JWTAuthenticator.splitByAlgorithm(Self.jwks(row.keys))
        } catch {
            #expect(row.expected == nil, "refused: \(error)")
            return
        }
        let kids = try split.mapValues { set -> [String] in
            let object = try JSONSerialization.jsonObject(with: Data(set.utf8)) as? [String: Any]
            return (object?["keys"] as? [[String: Any]] ?? []).compactMap { $0["kid"] as? String }
        }
        #expect(kids == row.expected)
    }

    @Test(arguments: [
        (TestKeys.compact(header: #"{"alg":"HS256","typ":"JWT"}"#, payload: "{}"), "HS256"),
        (TestKeys.compact(header: #"{"alg":"none"}"#, payload: "{}"), "none"),
        // Padding-free base64url with `-` and `_` (the header `{"alg":"ES256","k":"?>?"}`).
        (TestKeys.compact(header: #"{"alg":"ES256","k":"?>?"}"#, payload: "{}"), "ES256"),
        (TestKeys.compact(header: #"{"typ":"JWT"}"#, payload: "{}"), nil),
        (TestKeys.compact(header: #"{"alg":256}"#, payload: "{}"), nil),
        (TestKeys.compact(header: "[]", payload: "{}"), nil),
        ("!!!.e30.", nil),
        ("", nil),
        (TestKeys.compact(header: #"{"alg":"HS256","pad":"\#(String(repeating: "x", count: 4000))"}"#, payload: "{}"), nil),
    ] as [(String, String?)])
    func headerAlgorithm(_ token: String, _ expected: String?) {
        #expect(JWTAuthenticator.headerAlgorithm(token) == expected)
    }
}
