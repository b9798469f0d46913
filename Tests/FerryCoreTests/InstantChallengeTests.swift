@testable import FerryInstant
import Testing

@Suite("Instant upload: the challenge and its proof")
struct InstantChallengeTests {
    static let file: [UInt8] = (0..<10_000).map { UInt8(($0 * 7 + 3) % 256) }
    static let vector = InstantChallenge(nonce: Array(0..<32), ranges: [100...199, 5000...5099], expires: 1_796_380_000)

    /// Pinned by an independent implementation (Python's `hmac` over the same message).
    @Test func theProofMatchesAnIndependentHMAC() throws {
        var proof = InstantProof(challenge: Self.vector, length: 10_000)
        #expect(proof.finalize() == nil, "no range bytes yet")
        proof.update(Self.file[100...149])
        proof.update(Self.file[150...199])
        proof.update(Self.file[5000...5099])
        let answer = try #require(proof.finalize())
        #expect(InstantProof.fieldValue(answer) == ":CgLpLDr1gsK5jU5D4lCPtcd5KyjJj7QdCNRT3kbuYD8=:")
        #expect(proof.accepts(answer))
        var wrong = answer
        wrong[31] ^= 1
        #expect(!proof.accepts(wrong) && !proof.accepts(Array(answer.prefix(31))))
    }

    @Test func anyOtherByteNonceLengthOrRangeChangesTheProof() throws {
        func proof(_ challenge: InstantChallenge, length: Int64 = 10_000, file: [UInt8] = Self.file) -> [UInt8]? {
            var proof = InstantProof(challenge: challenge, length: length)
            for range in challenge.ranges { proof.update(file[Int(range.lowerBound)...Int(range.upperBound)]) }
            return proof.finalize()
        }
        let right = try #require(proof(Self.vector))
        var file = Self.file
        file[5050] ^= 0x80
        var nonce = Self.vector
        nonce.nonce[0] ^= 1
        var shifted = Self.vector
        shifted.ranges = [101...200, 5000...5099]
        for other in [proof(Self.vector, file: file), proof(nonce), proof(Self.vector, length: 10_001), proof(shifted)] {
            #expect(other != nil && other != right)
        }
        var short = InstantProof(challenge: Self.vector, length: 10_000)
        short.update(Self.file[100...199])
        #expect(!short.accepts(right), "a proof over part of the ranges is refused")
    }

    @Test func aChallengeSpreadsItsRangesOverTheFile() throws {
        var generator = SystemRandomNumberGenerator()
        for length: Int64 in [1, 100, 16_384, 16_385, 65_536, 1_843_200, 5_000_000_000] {
            for count in [1, 4, 16, 40] {
                let challenge = try #require(InstantChallenge.make(length: length, count: count, expires: 1, using: &generator))
                #expect(challenge.isValid(forLength: length), "\(length) \(count): \(challenge.rangesText)")
                let ranges = min(count, InstantChallenge.maximumRanges)
                if length <= Int64(ranges) * InstantChallenge.rangeSize {
                    #expect(challenge.ranges == [0...(length - 1)], "a small file is one range over all of it")
                } else {
                    #expect(challenge.ranges.count == ranges && challenge.ranges.allSatisfy { $0.count == InstantChallenge.rangeSize })
                    // One range in each equal slice of the file.
                    let slice = length / Int64(ranges)
                    for (index, range) in challenge.ranges.enumerated() {
                        #expect(range.lowerBound >= Int64(index) * slice && range.upperBound < Int64(index + 1) * slice)
                    }
                }
            }
        }
        #expect(InstantChallenge.make(length: 0, count: 4, expires: 1, using: &generator) == nil, "an empty file needs no proof")
        let nonces = Set((0..<100).compactMap { _ in InstantChallenge.make(length: 1 << 20, count: 4, expires: 1, using: &generator)?.nonce })
        #expect(nonces.count == 100 && nonces.allSatisfy { $0.count == 32 })
    }

    @Test func theFieldRoundTripsAndRefusesWhatAServerNeverSends() throws {
        #expect(Self.vector.fieldValue == "nonce=:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:, ranges=\"100-199,5000-5099\", expires=1796380000")
        #expect(InstantChallenge(fieldValue: Self.vector.fieldValue) == Self.vector)
        #expect(InstantChallenge(fieldValue: "expires=1796380000,ranges=\"100-199,5000-5099\",  other=?1,nonce=:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:") == Self.vector)
        #expect(InstantChallenge(fieldValue: "expires=1796380000,ranges=\"100-199,5000-5099\",  other=tok,nonce=:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:") == Self.vector)
        #expect(InstantChallenge(fieldValue: "nonce=:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:;v=2, ranges=\"100-199,5000-5099\", expires=1796380000") == Self.vector, "parameters are ignored")
        let nonce = ":AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:"
        for malformed in [
            "", "nonce", "nonce=\(nonce)", "nonce=\(nonce), ranges=\"1-2\"", "nonce=\(nonce), ranges=\"1-2\", expires=x",
            "nonce=\(nonce), ranges=\"2-1\", expires=1", "nonce=\(nonce), ranges=\"-1-2\", expires=1", "nonce=\(nonce), ranges=\"1-\", expires=1",
            "nonce=\(nonce), ranges=\"1-2,\", expires=1", "nonce=\(nonce), ranges=\"\", expires=1", "nonce=\(nonce), ranges=\"1-2\", expires=1,",
            "nonce=:AAEC:, ranges=\"1-2\", expires=1x", "nonce=:not base64!:, ranges=\"1-2\", expires=1", "nonce=\"x\", ranges=\"1-2\", expires=1",
            "nonce=\(nonce), ranges=\"1-2\\\"\", expires=1", "nonce=\(nonce), ranges=\"1-2\", expires=1, flag=?2",
            "nonce=\(nonce), ranges=\"\((0..<17).map { "\($0 * 10)-\($0 * 10 + 1)" }.joined(separator: ","))\", expires=1",
            "nonce=\(nonce), ranges=\"1-99999999999999999999\", expires=1", String(repeating: "a", count: 2000),
        ] {
            #expect(InstantChallenge(fieldValue: malformed) == nil, "\(malformed)")
        }
        // Parsed, then judged against the file: sizes, order, overlap, bounds, the nonce's size.
        for (ranges, valid) in [
            ("0-9999", true), ("0-65535", true), ("0-65536", false), ("0-32767,32768-65535", true), ("0-32767,32769-65537", false),
            ("10-20,20-30", false), ("30-40,10-20", false), ("99990-99999", true), ("99990-100000", false),
        ] {
            let challenge = try #require(InstantChallenge(fieldValue: "nonce=\(nonce), ranges=\"\(ranges)\", expires=1"))
            #expect(challenge.isValid(forLength: 100_000) == valid, "\(ranges)")
        }
        #expect(!InstantChallenge(nonce: [1, 2], ranges: [0...1], expires: 1).isValid(forLength: 10))
        #expect(InstantProof.parse(fieldValue: " :CgLpLDr1gsK5jU5D4lCPtcd5KyjJj7QdCNRT3kbuYD8=: ")?.count == 32)
        for malformed in ["", ":", "::", ":AAEC:", "CgLpLDr1gsK5jU5D4lCPtcd5KyjJj7QdCNRT3kbuYD8=", ":CgLpLDr1gsK5jU5D4lCPtcd5KyjJj7QdCNRT3kbuYD8:"] {
            #expect(InstantProof.parse(fieldValue: malformed) == nil, "\(malformed)")
        }
    }

    /// Whatever a server or a proxy puts in the field, parsing and answering never trap.
    @Test func hostileFieldsNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("nonce=ranges\"expires,:-0123456789 ?;abcXYZ+/=*".utf8)
        for _ in 0..<20_000 {
            let bytes = (0..<Int.random(in: 0...80, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }
            if let challenge = InstantChallenge(fieldValue: String(decoding: bytes, as: UTF8.self)) {
                _ = challenge.isValid(forLength: .max)
                _ = InstantProof(challenge: challenge, length: .max).finalize()
            }
        }
        let huge = InstantChallenge(nonce: Array(repeating: 0, count: 32), ranges: [0...(Int64.max - 1), Int64.max...Int64.max], expires: 0)
        #expect(!huge.isValid(forLength: .max))
        #expect(InstantProof(challenge: huge, length: .max).remaining == .max)
        let big = "nonce=:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:, ranges=\"0-499999999999999999,500000000000000000-999999999999999999\", expires=1"
        #expect(InstantChallenge(fieldValue: big).map { InstantProof(challenge: $0, length: .max).remaining } == 1_000_000_000_000_000_000)
    }
}
