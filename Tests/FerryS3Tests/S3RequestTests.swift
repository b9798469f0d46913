import Foundation
import Testing

@testable import FerryS3

@Suite("S3 requests and answers")
struct S3RequestTests {
    static let location = S3Location(endpoint: URL(string: "http://127.0.0.1:7480/")!, bucket: "ferry")

    @Test func requestsArePathStyleWithTheirQueries() {
        let create = S3Request(.createMultipartUpload(key: "uploads/ab12"), at: Self.location)
        #expect(create.method == "POST")
        #expect(create.url.absoluteString == "http://127.0.0.1:7480/ferry/uploads/ab12?uploads")

        let part = S3Request(.uploadPart(key: "uploads/ab12", uploadID: "2~x+y/z", partNumber: 3, length: 5 << 20), at: Self.location)
        #expect(part.method == "PUT" && part.bodyLength == 5 << 20)
        #expect(part.url.absoluteString == "http://127.0.0.1:7480/ferry/uploads/ab12?partNumber=3&uploadId=2~x%2By%2Fz")
        #expect(SigV4Signer.canonicalQuery(part.url) == "partNumber=3&uploadId=2~x%2By%2Fz")

        let get = S3Request(.getObject(key: "uploads/ab12", range: 10..<20), at: Self.location)
        #expect(get.headers.contains { $0 == ("Range", "bytes=10-19") })

        let copy = S3Request(
            .uploadPartCopy(key: "final", uploadID: "u", partNumber: 1, sourceKey: "uploads/a b", sourceRange: 0..<(5 << 20)),
            at: Self.location)
        #expect(copy.headers.contains { $0 == ("x-amz-copy-source", "/ferry/uploads/a%20b") })
        #expect(copy.headers.contains { $0 == ("x-amz-copy-source-range", "bytes=0-5242879") })

        let whole = S3Request(.copyObject(key: "uploads/cd34", sourceKey: "uploads/a b"), at: Self.location)
        #expect(whole.method == "PUT" && whole.url.absoluteString == "http://127.0.0.1:7480/ferry/uploads/cd34" && whole.url.query == nil)
        #expect(whole.headers.contains { $0 == ("x-amz-copy-source", "/ferry/uploads/a%20b") })
        #expect(!whole.headers.contains { $0.0 == "x-amz-copy-source-range" })

        let list = S3Request(.listParts(key: "k", uploadID: "u", marker: 1000), at: Self.location)
        #expect(list.url.query == "uploadId=u&part-number-marker=1000")
    }

    @Test func completionListsEveryPartInOrderWithQuotedETags() throws {
        let request = S3Request(
            .completeMultipartUpload(key: "k", uploadID: "u", parts: [S3Part(number: 2, size: 1, etag: "bbb"), S3Part(number: 1, size: 5 << 20, etag: "\"aaa\"")]),
            at: Self.location)
        let body = String(decoding: try #require(request.body), as: UTF8.self)
        #expect(body == "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"aaa\"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>\"bbb\"</ETag></Part></CompleteMultipartUpload>")
        #expect(request.bodyLength == Int64(body.utf8.count))
    }

    @Test func answersAreParsed() {
        let created = Array("""
            <?xml version="1.0" encoding="UTF-8"?>
            <InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>ferry</Bucket><Key>k</Key><UploadId>2~abc</UploadId></InitiateMultipartUploadResult>
            """.utf8)
        #expect(S3Response.uploadID(created) == "2~abc")

        let listed = Array("""
            <ListPartsResult><IsTruncated>true</IsTruncated><NextPartNumberMarker>2</NextPartNumberMarker>
            <Part><PartNumber>1</PartNumber><LastModified>x</LastModified><ETag>&quot;e1&quot;</ETag><Size>5242880</Size></Part>
            <Part><PartNumber>2</PartNumber><ETag>"e2"</ETag><Size>7</Size></Part></ListPartsResult>
            """.utf8)
        let page = S3Response.parts(listed)
        #expect(page.parts == [S3Part(number: 1, size: 5_242_880, etag: "e1"), S3Part(number: 2, size: 7, etag: "e2")])
        #expect(page.nextMarker == 2)

        // RGW: UploadPartCopy's ETag comes without quotes.
        #expect(S3Response.copyETag(Array("<CopyPartResult><ETag>abc</ETag></CopyPartResult>".utf8)) == "abc")

        let gone = S3Response.failure(status: 404, body: Array("<Error><Code>NoSuchKey</Code><Message>none</Message></Error>".utf8))
        #expect(gone.uploadGone && gone.code == "NoSuchKey" && gone.message == "none")
        #expect(S3Response.failure(status: 500, body: []).code == "HTTP500")
    }
}
