import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1

/// The S3 calls Ferry's object store makes, narrow enough to fake in tests.
public protocol ObjectStorage: Sendable {
    func createMultipartUpload(key: String) async throws -> String
    /// Sends `length` bytes as part `number`; returns its ETag.
    func uploadPart<Body: AsyncSequence & Sendable>(key: String, uploadID: String, number: Int, length: Int64, body: Body) async throws -> String
    where Body.Element == ByteBuffer
    func uploadPartCopy(key: String, uploadID: String, number: Int, sourceKey: String, sourceRange: Range<Int64>?) async throws -> String
    /// Copies the whole object `sourceKey` (at most 5 GiB) to `key`, in the store.
    func copyObject(key: String, sourceKey: String) async throws
    /// Every part of the upload (all pages); throws a `S3Response.Failure` with `uploadGone` when it no longer exists.
    func listParts(key: String, uploadID: String) async throws -> [S3Part]
    func completeMultipartUpload(key: String, uploadID: String, parts: [S3Part]) async throws
    func abortMultipartUpload(key: String, uploadID: String) async throws
    func putObject(key: String, bytes: ByteBuffer) async throws
    /// Stores `length` bytes streamed from `body` as the object.
    func putObject<Body: AsyncSequence & Sendable>(key: String, length: Int64, body: Body) async throws where Body.Element == ByteBuffer
    /// Every key starting with `prefix` (all pages).
    func listObjects(prefix: String) async throws -> [String]
    /// Every in-progress multipart upload of a key starting with `prefix` (all pages).
    func listMultipartUploads(prefix: String) async throws -> [(key: String, uploadID: String)]
    /// The object's size, or nil when there is none.
    func headObject(key: String) async throws -> Int64?
    /// Delivers the object's bytes (of `range`, if given) to `consume`, a buffer at a time.
    func getObject(key: String, range: Range<Int64>?, consume: (ByteBuffer) async throws -> Void) async throws
    func deleteObject(key: String) async throws
}

/// `ObjectStorage` over AsyncHTTPClient with Signature V4; bodies stream, answers are bounded.
public struct S3Client: ObjectStorage {
    public let http: HTTPClient
    public let location: S3Location
    public let signer: SigV4Signer
    /// Per request (a part of a few MiB on a slow store still finishes well inside it).
    public var timeout: TimeAmount = .minutes(10)

    public init(http: HTTPClient, location: S3Location, signer: SigV4Signer) {
        self.http = http
        self.location = location
        self.signer = signer
    }

    public func createMultipartUpload(key: String) async throws -> String {
        let answer = try await send(.createMultipartUpload(key: key))
        guard let id = S3Response.uploadID(answer.body) else {
            throw S3Response.Failure(status: answer.status, code: "MalformedResponse", message: "no UploadId")
        }
        return id
    }

    public func uploadPart<Body: AsyncSequence & Sendable>(key: String, uploadID: String, number: Int, length: Int64, body: Body) async throws -> String
    where Body.Element == ByteBuffer {
        let answer = try await send(.uploadPart(key: key, uploadID: uploadID, partNumber: number, length: length), stream: .stream(body, length: .known(length)))
        guard let etag = answer.headers["etag"] else {
            throw S3Response.Failure(status: answer.status, code: "MalformedResponse", message: "no ETag for part \(number)")
        }
        return S3Part.unquoted(etag)
    }

    public func uploadPartCopy(key: String, uploadID: String, number: Int, sourceKey: String, sourceRange: Range<Int64>?) async throws -> String {
        let answer = try await send(.uploadPartCopy(key: key, uploadID: uploadID, partNumber: number, sourceKey: sourceKey, sourceRange: sourceRange))
        guard let etag = S3Response.copyETag(answer.body) else {
            throw S3Response.Failure(status: answer.status, code: "MalformedResponse", message: "no ETag for copied part \(number)")
        }
        return etag
    }

    public func copyObject(key: String, sourceKey: String) async throws {
        // A copy can fail after its 200 has started: only an answer naming the copy's ETag is one.
        let answer = try await send(.copyObject(key: key, sourceKey: sourceKey))
        guard S3Response.copyETag(answer.body) != nil else {
            throw S3Response.Failure(status: answer.status, code: "MalformedResponse", message: "no ETag for the copy of \(sourceKey)")
        }
    }

    public func listParts(key: String, uploadID: String) async throws -> [S3Part] {
        var parts: [S3Part] = []
        var marker: Int?
        repeat {
            let page = S3Response.parts(try await send(.listParts(key: key, uploadID: uploadID, marker: marker)).body)
            parts += page.parts
            marker = page.nextMarker
        } while marker != nil
        return parts
    }

    public func completeMultipartUpload(key: String, uploadID: String, parts: [S3Part]) async throws {
        let answer = try await send(.completeMultipartUpload(key: key, uploadID: uploadID, parts: parts))
        // S3 may answer 200 with an <Error> body once it has started sending.
        if answer.body.count < 4096, String(decoding: answer.body, as: UTF8.self).contains("<Error>") {
            throw S3Response.failure(status: answer.status, body: answer.body)
        }
    }

    public func abortMultipartUpload(key: String, uploadID: String) async throws {
        _ = try await send(.abortMultipartUpload(key: key, uploadID: uploadID))
    }

    public func putObject(key: String, bytes: ByteBuffer) async throws {
        let hash = SigV4Signer.hex(SHA256.hash(data: Data(bytes.readableBytesView)))
        _ = try await send(.putObject(key: key, length: Int64(bytes.readableBytes)), stream: .bytes(bytes), payloadHash: hash)
    }

    public func putObject<Body: AsyncSequence & Sendable>(key: String, length: Int64, body: Body) async throws
    where Body.Element == ByteBuffer {
        _ = try await send(.putObject(key: key, length: length), stream: .stream(body, length: .known(length)))
    }

    public func listObjects(prefix: String) async throws -> [String] {
        var keys: [String] = []
        var token: String?
        repeat {
            let page = S3Response.objects(try await send(.listObjects(prefix: prefix, continuation: token)).body)
            keys += page.keys
            token = page.continuation
        } while token != nil
        return keys
    }

    public func listMultipartUploads(prefix: String) async throws -> [(key: String, uploadID: String)] {
        var uploads: [(key: String, uploadID: String)] = []
        var marker: (key: String, uploadID: String)?
        repeat {
            let operation = S3Operation.listMultipartUploads(prefix: prefix, keyMarker: marker?.key, uploadIDMarker: marker?.uploadID)
            let page = S3Response.multipartUploads(try await send(operation).body)
            uploads += page.uploads
            marker = page.next
        } while marker != nil
        return uploads
    }

    public func headObject(key: String) async throws -> Int64? {
        do {
            let answer = try await send(.headObject(key: key))
            return answer.headers["content-length"].flatMap { Int64($0) }
        } catch let failure as S3Response.Failure where failure.status == 404 {
            return nil
        }
    }

    public func getObject(key: String, range: Range<Int64>?, consume: (ByteBuffer) async throws -> Void) async throws {
        let request = try signed(S3Request(.getObject(key: key, range: range), at: location), stream: nil, payloadHash: SigV4Signer.emptyPayloadHash)
        let response = try await http.execute(request, timeout: timeout)
        guard (200..<300).contains(Int(response.status.code)) else {
            throw S3Response.failure(status: Int(response.status.code), body: try await Self.collect(response.body))
        }
        for try await buffer in response.body { try await consume(buffer) }
    }

    /// Creates the bucket (set-up and tests); an existing one of ours is fine.
    public func createBucket() async throws {
        do {
            _ = try await send(.createBucket)
        } catch let failure as S3Response.Failure where failure.code == "BucketAlreadyOwnedByYou" {
            return
        }
    }

    public func deleteObject(key: String) async throws {
        do {
            _ = try await send(.deleteObject(key: key))
        } catch let failure as S3Response.Failure where failure.status == 404 {
            return
        }
    }

    // MARK: Sending

    struct Answer {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
    }

    /// Signs and sends one request; a status outside 2xx becomes an `S3Response.Failure`.
    func send(_ operation: S3Operation, stream: HTTPClientRequest.Body? = nil, payloadHash: String? = nil) async throws -> Answer {
        let request = S3Request(operation, at: location)
        var body = stream
        var hash = payloadHash ?? (stream == nil ? SigV4Signer.emptyPayloadHash : SigV4Signer.unsignedPayload)
        if let xml = request.body {
            body = .bytes(ByteBuffer(bytes: xml))
            hash = SigV4Signer.hex(SHA256.hash(data: Data(xml)))
        }
        let response = try await http.execute(try signed(request, stream: body, payloadHash: hash), timeout: timeout)
        let bytes = try await Self.collect(response.body)
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else { throw S3Response.failure(status: status, body: bytes) }
        var headers: [String: String] = [:]
        for header in response.headers { headers[header.name.lowercased()] = header.value }
        return Answer(status: status, headers: headers, body: bytes)
    }

    private func signed(_ request: S3Request, stream: HTTPClientRequest.Body?, payloadHash: String) throws -> HTTPClientRequest {
        var headers = request.headers + [("x-amz-content-sha256", payloadHash)]
        if let length = request.bodyLength { headers.append(("Content-Length", String(length))) }
        let added = signer.sign(method: request.method, url: request.url, headers: headers, payloadHash: payloadHash, at: Date())
        var http = HTTPClientRequest(url: request.url.absoluteString)
        http.method = HTTPMethod(rawValue: request.method)
        for (name, value) in headers + added where name.lowercased() != "content-length" { http.headers.add(name: name, value: value) }
        http.body = stream
        return http
    }

    /// At most 1 MiB of an answer (S3 answers Ferry reads are small XML documents).
    static func collect(_ body: HTTPClientResponse.Body) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        for try await buffer in body where bytes.count < 1 << 20 {
            bytes += buffer.readableBytesView.prefix((1 << 20) - bytes.count)
        }
        return bytes
    }
}
