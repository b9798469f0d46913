/// The public identifier of an upload: 128 random bits as 32 lowercase hex digits.
///
/// An upload URL is a bearer capability, so the identifier is unguessable and never
/// derived from anything a client sent; it is also safe to use as a file name.
public struct UploadID: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let rawValue: String

    /// Accepts only the shape `UploadID.random()` produces (16–64 characters of `[0-9a-z]`).
    public init?(_ rawValue: some StringProtocol) {
        guard (16...64).contains(rawValue.utf8.count),
            rawValue.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) })
        else { return nil }
        self.rawValue = String(rawValue)
    }

    /// A new identifier from the system's cryptographically secure generator.
    public static func random() -> UploadID {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        var bytes = [UInt8]()
        bytes.reserveCapacity(32)
        for _ in 0..<2 {
            let word = generator.next() as UInt64
            for shift in stride(from: 60, through: 0, by: -4) {
                bytes.append(digits[Int((word >> UInt64(shift)) & 0xF)])
            }
        }
        return UploadID(String(decoding: bytes, as: UTF8.self))!
    }

    public var description: String { rawValue }

    public static func < (lhs: UploadID, rhs: UploadID) -> Bool { lhs.rawValue < rhs.rawValue }
}
