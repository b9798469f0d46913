/// A single `Range: bytes=…` of a GET (several ranges are answered with the whole body).
public enum ByteRange: Sendable, Equatable {
    case whole
    case partial(Range<Int64>)
    case unsatisfiable

    /// The range a request asks for, before the upload's length is known.
    public enum Request: Sendable, Equatable {
        case whole
        /// `bytes=first-` or `bytes=first-last`.
        case from(Int64, through: Int64?)
        /// `bytes=-count`: the last `count` bytes.
        case suffix(Int64)
        /// A form that can never be satisfied (`bytes=-0`).
        case unsatisfiable

        /// Parses the field; anything this server does not serve as a range is `whole`.
        public init(_ header: String?) {
            guard let header, header.hasPrefix("bytes="), !header.contains(",") else {
                self = .whole
                return
            }
            let spec = header.dropFirst(6).trimmingCharacters(in: .whitespaces)
            guard let dash = spec.firstIndex(of: "-") else {
                self = .whole
                return
            }
            let first = spec[..<dash]
            let last = spec[spec.index(after: dash)...]
            if first.isEmpty {
                if let suffix = Int64(last), suffix > 0 {
                    self = .suffix(suffix)
                } else {
                    self = last.isEmpty ? .whole : .unsatisfiable
                }
                return
            }
            guard let start = Int64(first), start >= 0 else {
                self = .whole
                return
            }
            if last.isEmpty {
                self = .from(start, through: nil)
            } else if let end = Int64(last), end >= start {
                self = .from(start, through: end)
            } else {
                self = .whole
            }
        }

        /// The bytes of an upload of `length` this request names.
        public func resolve(length: Int64) -> ByteRange {
            switch self {
            case .whole: return .whole
            case .unsatisfiable: return .unsatisfiable
            case .suffix(let count): return length == 0 ? .unsatisfiable : .partial(max(0, length - count)..<length)
            case .from(let start, let end):
                guard start < length else { return .unsatisfiable }
                // RFC 9110: a last position past the end means the end (never `end + 1`, which can overflow).
                return .partial(start..<(min(end ?? (length - 1), length - 1) + 1))
            }
        }
    }

    /// Parses and resolves in one step.
    public static func parse(_ header: String?, length: Int64) -> ByteRange {
        Request(header).resolve(length: length)
    }
}
