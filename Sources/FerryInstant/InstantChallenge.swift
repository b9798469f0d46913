import Crypto
import RawStructuredFieldValues

/// The server's question to a client that announced content the platform already holds
/// (docs/instant-upload.md): a fresh nonce and a few byte ranges of the file, answered with an
/// `InstantProof`. Sent as `Ferry-Challenge: nonce=:…:, ranges="a-b,c-d", expires=T`.
public struct InstantChallenge: Sendable, Equatable {
    /// The nonce's size in bytes.
    public static let nonceSize = 32
    /// The size of each range a challenge draws, in bytes.
    public static let rangeSize: Int64 = 4096
    /// The most ranges a challenge names.
    public static let maximumRanges = 16
    /// The most bytes a challenge asks for, over all its ranges (what a client reads at most).
    public static let maximumBytes = Int64(maximumRanges) * rangeSize

    /// Keys the proof; fresh per challenge, used once.
    public var nonce: [UInt8]
    /// Inclusive byte ranges of the file, sorted and disjoint.
    public var ranges: [ClosedRange<Int64>]
    /// When the challenge lapses, in seconds since 1970.
    public var expires: Int64

    public init(nonce: [UInt8], ranges: [ClosedRange<Int64>], expires: Int64) {
        self.nonce = nonce
        self.ranges = ranges
        self.expires = expires
    }

    /// A challenge for a file of `length` bytes: `count` ranges of up to `rangeSize` bytes, one
    /// drawn at random inside each of `count` equal slices of the file (so the ranges spread over
    /// it, sorted and disjoint), or one range over the whole file when it is no longer than
    /// `count` ranges. Nil for an empty file, which needs no proof.
    public static func make(
        length: Int64, count: Int, expires: Int64, using generator: inout some RandomNumberGenerator
    ) -> InstantChallenge? {
        guard length > 0 else { return nil }
        let count = Int64(min(max(count, 1), maximumRanges))
        let nonce = (0..<nonceSize).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        guard length > count * rangeSize else {
            return InstantChallenge(nonce: nonce, ranges: [0...(length - 1)], expires: expires)
        }
        let slice = length / count
        let ranges = (0..<count).map { index -> ClosedRange<Int64> in
            let sliceStart = index * slice
            let start = sliceStart + Int64.random(in: 0...(slice - rangeSize), using: &generator)
            return start...(start + rangeSize - 1)
        }
        return InstantChallenge(nonce: nonce, ranges: ranges, expires: expires)
    }

    /// True when the ranges are ones a server may ask of a file of `length` bytes: 1 to
    /// `maximumRanges` inside the file, sorted and disjoint, at most `maximumBytes` in all, and
    /// the nonce is `nonceSize` bytes.
    public func isValid(forLength length: Int64) -> Bool {
        guard nonce.count == Self.nonceSize, (1...Self.maximumRanges).contains(ranges.count) else { return false }
        var next: Int64 = 0
        var total: Int64 = 0
        for range in ranges {
            guard range.lowerBound >= next, range.upperBound < length else { return false }
            total += range.upperBound - range.lowerBound + 1
            next = range.upperBound + 1
        }
        return total <= Self.maximumBytes
    }

    /// The ranges as the field carries them and the proof binds them: `a-b,c-d`.
    public var rangesText: String {
        ranges.map { "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ",")
    }

    /// The `Ferry-Challenge` field value.
    public var fieldValue: String {
        "nonce=:\(Base64.encode(nonce)):, ranges=\"\(rangesText)\", expires=\(expires)"
    }

    /// Parses a `Ferry-Challenge` field value (an RFC 8941 dictionary); nil when it is malformed
    /// or lacks a member: `nonce`, a byte sequence; `ranges`, a string of `first-last` pairs;
    /// `expires`, an integer. Other members and parameters are ignored. Whether the ranges fit
    /// the file is `isValid(forLength:)`'s question.
    public init?(fieldValue: String) {
        var parser = StructuredFieldValueParser(Array(fieldValue.utf8))
        guard fieldValue.utf8.count <= 1024, let dictionary = try? parser.parseDictionaryFieldValue() else { return nil }
        var nonce: [UInt8]?
        var text: String?
        var expires: Int64?
        for (key, member) in dictionary {
            guard case .item(let item) = member else { continue }
            switch (key, item.rfc9651BareItem) {
            case ("nonce", .undecodedByteSequence(let base64)): nonce = Base64.decode(base64)
            case ("ranges", .string(let string)): text = string
            case ("expires", .integer(let value)): expires = value
            default: continue
            }
        }
        guard let nonce, let text, let expires else { return nil }
        var ranges: [ClosedRange<Int64>] = []
        for pair in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = pair.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 2, let first = Self.decimal(bounds[0]), let last = Self.decimal(bounds[1]), first <= last,
                ranges.count < Self.maximumRanges
            else { return nil }
            ranges.append(first...last)
        }
        self.init(nonce: nonce, ranges: ranges, expires: expires)
    }

    /// A non-negative decimal of at most 18 digits (no sign, no spaces).
    static func decimal(_ text: Substring) -> Int64? {
        guard (1...18).contains(text.utf8.count), text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else {
            return nil
        }
        return Int64(text)
    }
}

/// The answer to an `InstantChallenge`: HMAC-SHA256 keyed by the nonce over
/// `ferry-instant-1\n<length>\n<ranges>\n` followed by the bytes of each range in order. Sent as
/// `Ferry-Proof: :…:`.
public struct InstantProof: Sendable {
    var mac: HMAC<SHA256>
    /// Bytes still expected, over all ranges.
    public private(set) var remaining: Int64

    /// Starts the answer to `challenge` for a file of `length` bytes; feed it the bytes of the
    /// challenge's ranges, in order, with `update`.
    public init(challenge: InstantChallenge, length: Int64) {
        mac = HMAC<SHA256>(key: SymmetricKey(data: challenge.nonce))
        mac.update(data: Array("ferry-instant-1\n\(length)\n\(challenge.rangesText)\n".utf8))
        // Saturating: a challenge no file could answer (checked by `isValid`) never completes.
        remaining = challenge.ranges.reduce(0) { total, range in
            let (size, overflow) = range.upperBound.subtractingReportingOverflow(range.lowerBound)
            let (sum, overflowAgain) = total.addingReportingOverflow(size)
            return overflow || overflowAgain || sum == .max ? .max : sum + 1
        }
    }

    /// Adds bytes of the ranges, in order (any split).
    public mutating func update(_ bytes: some Collection<UInt8>) {
        mac.update(data: Array(bytes))
        remaining -= Int64(bytes.count)
    }

    /// The proof; nil unless exactly the ranges' bytes were fed.
    public func finalize() -> [UInt8]? {
        guard remaining == 0 else { return nil }
        return Array(mac.finalize())
    }

    /// True when `answer` is the proof (swift-crypto compares a MAC in constant time); false if
    /// the ranges' bytes were not all fed.
    public func accepts(_ answer: [UInt8]) -> Bool {
        guard remaining == 0 else { return false }
        return mac.finalize() == answer
    }

    /// The `Ferry-Proof` field value of `proof`.
    public static func fieldValue(_ proof: [UInt8]) -> String { ":\(Base64.encode(proof)):" }

    /// Parses a `Ferry-Proof` field value: one byte sequence (an RFC 8941 item) of a SHA-256's
    /// size; nil otherwise.
    public static func parse(fieldValue: String) -> [UInt8]? {
        var parser = StructuredFieldValueParser(Array(fieldValue.utf8))
        guard fieldValue.utf8.count <= 128, let item = try? parser.parseItemFieldValue(),
            case .undecodedByteSequence(let base64) = item.rfc9651BareItem, let bytes = Base64.decode(base64),
            bytes.count == SHA256.byteCount
        else { return nil }
        return bytes
    }
}

extension InstantProof {
    /// The proof a client holding a file of `length` bytes gives for `challenge`, reading each
    /// challenged range with `read` (which returns exactly that range's bytes); nil when the
    /// challenge is not one a server may ask of such a file (`InstantChallenge.isValid`).
    public static func answer(
        _ challenge: InstantChallenge, length: Int64, read: (ClosedRange<Int64>) async throws -> [UInt8]
    ) async rethrows -> [UInt8]? {
        guard challenge.isValid(forLength: length) else { return nil }
        var proof = InstantProof(challenge: challenge, length: length)
        for range in challenge.ranges { proof.update(try await read(range)) }
        return proof.finalize()
    }
}
