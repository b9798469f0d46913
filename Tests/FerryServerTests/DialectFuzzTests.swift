import FerryCore
@testable import FerryHTTP
import FerryProtocol
@testable import FerryRUFH
import FerryTestSupport
@testable import FerryTus
import Foundation
import HTTPTypes
import Logging
import NIOCore
import Testing

/// Property tests over the dialects and their parsers: random and hostile requests (numbers at
/// and past 2^63, NaN, signs, spaces, repeated fields, odd URLs, bodies shorter and longer
/// than announced) go through tus and RUFH against in-memory seams. A Swift trap would kill
/// the test process; the properties checked are "answers" and "never a 5xx for bad input".
///
/// Bounded for CI: `FERRY_FUZZ_SECONDS` (default 20) or `FERRY_FUZZ_REQUESTS` (default 20,000),
/// whichever ends first; `FERRY_FUZZ_SEED` replays a run. A longer run:
/// `FERRY_FUZZ_SECONDS=1800 swift test --filter DialectFuzzTests`. `scripts/test.sh` runs this
/// suite on its own after the others (60 s per target), so it never competes with timed tests.
@Suite("Dialect fuzzing: hostile requests never crash or answer 5xx")
struct DialectFuzzTests {
    static let environment = ProcessInfo.processInfo.environment
    static let seconds = Double(environment["FERRY_FUZZ_SECONDS"] ?? "") ?? 20
    static let requests = Int(environment["FERRY_FUZZ_REQUESTS"] ?? "") ?? 20_000

    @Test func randomRequestsThroughBothDialects() async throws {
        let seed = UInt64(Self.environment["FERRY_FUZZ_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max)
        var random = SplitMix(seed: seed)
        let engine = UploadEngine(
            store: MemoryByteStore(), catalog: MemoryCatalog(), locker: LocalUploadLocker(),
            configuration: EngineConfiguration(maxSize: nil, lockTimeout: .milliseconds(200), creationsPerMinutePerClient: nil),
            logger: Logger(label: "fuzz")
        )
        let endpoints = UploadEndpoints(engine: engine)
        var known: [String] = []
        var statuses: [Int: Int] = [:]
        var serverFaults: [String] = []
        let deadline = ContinuousClock.now + .seconds(Self.seconds)
        var sent = 0
        while sent < Self.requests, ContinuousClock.now < deadline {
            let (request, body) = FuzzRequest.make(&random, known: known)
            let transport = FuzzTransport()
            let chunks = AsyncStream<ByteBuffer> { continuation in
                for chunk in body { continuation.yield(ByteBuffer(bytes: chunk)) }
                continuation.finish()
            }
            let response = await endpoints.respond(to: request, body: chunks, transport: transport)
            sent += 1
            if sent % 64 == 0 { await Task.yield() }
            statuses[response.status.code, default: 0] += 1
            if response.status.code >= 500, response.status.code != 503, response.status.code != 507, serverFaults.count < 5 {
                serverFaults.append("\(request.method) \(request.path ?? "") \(request.headerFields) -> \(response.status.code) \(response.error.map { "\($0)" } ?? "")")
            }
            if let location = response.headers[HTTPField.Name.location], let path = URL(string: location)?.path {
                known.append(path)
                if known.count > 32 { known.removeFirst() }
            }
        }
        print("dialect fuzz: \(sent) requests, seed \(seed), statuses \(statuses.sorted { $0.key < $1.key })")
        #expect(sent > 500, "the fuzzer ran (\(sent) requests)")
        #expect(serverFaults.isEmpty, "bad input answered 5xx (seed \(seed)): \(serverFaults)")
    }

    @Test func parsersAcceptOrRefuseEveryString() async throws {
        var random = SplitMix(seed: UInt64(Self.environment["FERRY_FUZZ_SEED"] ?? "") ?? 7)
        let deadline = ContinuousClock.now + .seconds(Self.seconds)
        var tried = 0
        while tried < Self.requests * 5, ContinuousClock.now < deadline {
            tried += 1
            // A loop with no suspension would hold one of the (two, here) cooperative threads
            // for the whole run and starve every test running beside it.
            if tried % 256 == 0 { await Task.yield() }
            let text = FuzzRequest.value(&random)
            let length = Int64(bitPattern: random.next()) & (random.next() % 2 == 0 ? 0xFF : .max)
            _ = ByteRange.parse("bytes=" + text, length: max(0, length))
            _ = ByteRange.parse(text, length: max(0, length))
            _ = try? UploadMetadata(tusHeader: text)
            _ = try? ChecksumExpectation(header: text)
            _ = UploadRoutes.validHost(text)
            _ = try? StructuredField.integer(text, "Upload-Offset", .invalidOffset)
            _ = try? StructuredField.bool(text, "Upload-Complete")
            _ = try? StructuredField.digests(text, "Repr-Digest")
            _ = StructuredField.wanted(text)
            // The statistics API's query values: times and spans.
            _ = try? StatsRoutes.date(Substring(text), "from")
            _ = StatsRoutes.span(Substring(text))
            _ = StatsRoutes.span(Substring(text + ["s", "m", "h", "d"].randomElement(using: &random)!))
        }
        print("parser fuzz: \(tried) strings through 13 parsers")
    }
}

/// A `BodyTransport` that says the body ended properly half of the time.
struct FuzzTransport: BodyTransport, InterimResponder {
    let ended = Bool.random()
    func willReadBody() async {}
    func bodyEnded() async -> BodyEnd { BodyEnd(complete: ended) }
    func sendInterim(_ response: HTTPResponse) async {}
}

/// Hostile requests built from a corpus of edge values and random mutations.
enum FuzzRequest {
    static let numbers = [
        "0", "1", "-1", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "18446744073709551616",
        "1e400", "1e300", "nan", "inf", "-inf", "0x10", " 5", "5 ", "+5", "00000000000000000001", "", "3.5", "1_000",
    ]
    static let words = [
        "?1", "?0", "?", "partial", "final;", "final;/files/", "application/offset+octet-stream", "application/partial-upload",
        "sha1 AAAA", "md5 ====", "sha-256=:AAAA:", "sha-256=:", "filename aGk=", "a b c", "a,a", "k \u{7F}", "bytes=0-", "bytes=-0",
        "bytes=5-1", "bytes=-9223372036854775808", "bytes=0-9223372036854775807", "1.0.0", "0.2.0", "3", "6", "8", "99",
        "Bearer x", "bearer", "Upload-Checksum", "http://elsewhere/files/", "\u{0}", "é", "100-continue",
    ]
    static let fields: [HTTPField.Name] = [
        "Tus-Resumable", "Upload-Length", "Upload-Offset", "Upload-Defer-Length", "Upload-Metadata", "Upload-Concat", "Upload-Checksum",
        "Content-Type", "Content-Length", "Upload-Draft-Interop-Version", "Upload-Complete", "Upload-Incomplete", "Range",
        "X-HTTP-Method-Override", "Content-Digest", "Repr-Digest", "Want-Repr-Digest", "Content-Disposition", "Trailer", "Authorization",
    ].compactMap { HTTPField.Name($0) }
    static let methods: [HTTPRequest.Method] = [.get, .head, .post, .patch, .delete, .options, .put, .init("PROPFIND")!]

    static func value(_ random: inout SplitMix) -> String {
        var text: String
        switch random.next() % 4 {
        case 0: text = numbers.randomElement(using: &random)!
        case 1: text = words.randomElement(using: &random)!
        case 2: text = String(Int64(bitPattern: random.next()))
        default:
            text = String(String.UnicodeScalarView((0..<Int(random.next() % 24)).compactMap { _ in Unicode.Scalar(UInt32(32 + random.next() % 95)) }))
        }
        if random.next() % 8 == 0 { text += "," + (numbers.randomElement(using: &random) ?? "") }
        return text
    }

    static func make(_ random: inout SplitMix, known: [String]) -> (HTTPRequest, [[UInt8]]) {
        let method = random.next() % 2 == 0 ? [.post, .patch, .head].randomElement(using: &random)! : methods.randomElement(using: &random)!
        let paths = ["/files/", "/files/default/", "/files/nope/", "/files/" + UploadID.random().rawValue, "/files/../x", "/files/%00", "/files"]
        var path = (known.isEmpty || random.next() % 3 == 0) ? paths.randomElement(using: &random)! : known.randomElement(using: &random)!
        if method == .post, random.next() % 4 != 0 { path = "/files/" }
        var request = HTTPRequest(method: method, scheme: "http", authority: random.next() % 5 == 0 ? value(&random) : "127.0.0.1", path: path)
        if random.next() % 4 != 0 { request.headerFields[HTTPField.Name("Tus-Resumable")!] = "1.0.0" }
        if random.next() % 2 == 0 {
            // Mostly valid, so that the deeper paths (bodies, completion, concatenation) are reached.
            let small = String(random.next() % 200)
            switch random.next() % 5 {
            case 0: request.headerFields[HTTPField.Name("Upload-Length")!] = small
            case 1: request.headerFields[HTTPField.Name("Upload-Defer-Length")!] = "1"
            case 2: request.headerFields[HTTPField.Name("Upload-Concat")!] = random.next() % 2 == 0 ? "partial" : "final;" + known.suffix(3).joined(separator: " ")
            case 3:
                request.headerFields[HTTPField.Name("Upload-Draft-Interop-Version")!] = ["3", "5", "6", "7", "8", "9"].randomElement(using: &random)!
                request.headerFields[HTTPField.Name("Upload-Complete")!] = random.next() % 2 == 0 ? "?1" : "?0"
            default: break
            }
            request.headerFields[HTTPField.Name("Upload-Offset")!] = random.next() % 2 == 0 ? "0" : small
            request.headerFields[.contentType] = random.next() % 2 == 0 ? "application/offset+octet-stream" : "application/partial-upload"
        }
        for _ in 0..<Int(random.next() % 4) {
            request.headerFields.append(HTTPField(name: fields.randomElement(using: &random)!, value: value(&random)))
        }
        var body: [[UInt8]] = []
        for _ in 0..<Int(random.next() % 3) {
            body.append((0..<Int(random.next() % 64)).map { _ in UInt8(truncatingIfNeeded: random.next()) })
        }
        return (request, body)
    }
}
