import Crypto
import Foundation
import Testing

@testable import FerryS3

/// The signer against the examples AWS publishes: the Signature Version 4 test suite (service
/// "service", 2015-08-30) and the S3 documentation's signed requests (2013-05-24).
@Suite("SigV4 signature test vectors")
struct SigV4Tests {
    struct Vector: Sendable, CustomTestStringConvertible {
        var name: String
        var method: String
        var url: String
        var headers: [(String, String)] = []
        var payloadHash = SigV4Signer.emptyPayloadHash
        var s3 = false
        var authorization: String

        var testDescription: String { name }
    }

    static let suite = SigV4Signer(
        credentials: S3Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1", service: "service"
    )
    static let s3 = SigV4Signer(
        credentials: S3Credentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1"
    )
    static let suiteDate = Date(timeIntervalSince1970: 1_440_938_160)  // 2015-08-30T12:36:00Z
    static let s3Date = Date(timeIntervalSince1970: 1_369_353_600)  // 2013-05-24T00:00:00Z
    static let suiteScope = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
    static let s3Scope = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
    static let welcome = SigV4Signer.hex(SHA256.hash(data: Data("Welcome to Amazon S3.".utf8)))

    static let vectors: [Vector] = [
        Vector(name: "get-vanilla", method: "GET", url: "https://example.amazonaws.com/",
               authorization: suiteScope + "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        Vector(name: "post-vanilla", method: "POST", url: "https://example.amazonaws.com/",
               authorization: suiteScope + "SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        Vector(name: "get-vanilla-query-order-key-case", method: "GET", url: "https://example.amazonaws.com/?Param2=value2&Param1=value1",
               authorization: suiteScope + "SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        Vector(name: "get-utf8", method: "GET", url: "https://example.amazonaws.com/%E1%88%B4",
               authorization: suiteScope + "SignedHeaders=host;x-amz-date, Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
        Vector(name: "get-unreserved", method: "GET",
               url: "https://example.amazonaws.com/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
               authorization: suiteScope + "SignedHeaders=host;x-amz-date, Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
        Vector(name: "S3 GET object with a range", method: "GET", url: "https://examplebucket.s3.amazonaws.com/test.txt",
               headers: [("Range", "bytes=0-9"), ("x-amz-content-sha256", SigV4Signer.emptyPayloadHash)], s3: true,
               authorization: s3Scope + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
        Vector(name: "S3 PUT object", method: "PUT", url: "https://examplebucket.s3.amazonaws.com/test$file.text",
               headers: [("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY"), ("x-amz-content-sha256", welcome)],
               payloadHash: welcome, s3: true,
               authorization: s3Scope + "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
        Vector(name: "S3 GET bucket lifecycle", method: "GET", url: "https://examplebucket.s3.amazonaws.com/?lifecycle",
               headers: [("x-amz-content-sha256", SigV4Signer.emptyPayloadHash)], s3: true,
               authorization: s3Scope + "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
        Vector(name: "S3 list objects", method: "GET", url: "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
               headers: [("x-amz-content-sha256", SigV4Signer.emptyPayloadHash)], s3: true,
               authorization: s3Scope + "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
    ]

    @Test(arguments: vectors)
    func signatureMatches(_ vector: Vector) throws {
        let signer = vector.s3 ? Self.s3 : Self.suite
        let added = signer.sign(
            method: vector.method, url: try #require(URL(string: vector.url)), headers: vector.headers,
            payloadHash: vector.payloadHash, at: vector.s3 ? Self.s3Date : Self.suiteDate
        )
        #expect(added.first { $0.0 == "Authorization" }?.1 == vector.authorization)
        #expect(added.first { $0.0 == "x-amz-date" }?.1 == (vector.s3 ? "20130524T000000Z" : "20150830T123600Z"))
    }

    @Test func canonicalRequestOfGetVanilla() throws {
        let url = try #require(URL(string: "https://example.amazonaws.com/"))
        let canonical = SigV4Signer.canonicalRequest(
            method: "GET", url: url, headers: [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")],
            payloadHash: SigV4Signer.emptyPayloadHash
        )
        #expect(canonical.request == "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" + SigV4Signer.emptyPayloadHash)
        #expect(SigV4Signer.hex(SHA256.hash(data: Data(canonical.request.utf8))) == "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
    }

    @Test func encodingHeadersAndHosts() throws {
        #expect(SigV4Signer.uriEncode("a b/c~d+e$é") == "a%20b%2Fc~d%2Be%24%C3%A9")
        #expect(SigV4Signer.trimmed("  a   b  c ") == "a b c")
        #expect(SigV4Signer.host(of: try #require(URL(string: "http://127.0.0.1:7480/bucket"))) == "127.0.0.1:7480")
        #expect(SigV4Signer.host(of: try #require(URL(string: "https://s3.example.com:443/b"))) == "s3.example.com")
        #expect(SigV4Signer.canonicalPath(try #require(URL(string: "http://h/bucket/uploads/a%2Bb/part.1"))) == "/bucket/uploads/a%2Bb/part.1")
        #expect(SigV4Signer.canonicalQuery(try #require(URL(string: "http://h/b/k?uploadId=x%2By&partNumber=2"))) == "partNumber=2&uploadId=x%2By")
        // A session token is signed.
        let temporary = SigV4Signer(credentials: S3Credentials(accessKeyID: "A", secretAccessKey: "S", sessionToken: "T"), region: "r")
        let added = temporary.sign(method: "GET", url: try #require(URL(string: "http://h/b")), headers: [], payloadHash: SigV4Signer.unsignedPayload, at: Self.s3Date)
        #expect(added.contains { $0 == ("x-amz-security-token", "T") })
        #expect(added.last?.1.contains("SignedHeaders=host;x-amz-date;x-amz-security-token") == true)
    }
}
