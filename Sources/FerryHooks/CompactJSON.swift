/// A JSON object (RFC 8259) checked and written back without insignificant whitespace, every
/// character outside printable ASCII escaped as `\uXXXX` (UTF-16 units, as JSON spells them),
/// so that it can travel in an HTTP header.
///
/// One pass over the bytes, no tree: keys keep their order and numbers their spelling. It runs
/// once per `pre-finish` answer, on the completing request's path, where a round trip through
/// `JSONSerialization` cost more than the rest of the callback's bookkeeping.
struct CompactJSON {
    private let input: [UInt8]
    private var index = 0
    private var output: [UInt8] = []
    /// The open containers: `{` or `[`. A heap array, so depth costs no stack.
    private var open: [UInt8] = []

    /// The compact ASCII form of `bytes`; nil unless they are one JSON object.
    static func objectASCII(_ bytes: some Collection<UInt8>) -> String? {
        var compactor = CompactJSON(input: Array(bytes))
        guard compactor.run() else { return nil }
        return String(decoding: compactor.output, as: UTF8.self)
    }

    private init(input: [UInt8]) {
        self.input = input
        output.reserveCapacity(input.count)
    }

    private var current: UInt8? { index < input.count ? input[index] : nil }

    private mutating func skipSpace() {
        while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
    }

    /// Copies the byte expected here; false if another one is here.
    private mutating func take(_ expected: UInt8) -> Bool {
        guard current == expected else { return false }
        output.append(expected)
        index += 1
        return true
    }

    private mutating func run() -> Bool {
        skipSpace()
        guard current == UInt8(ascii: "{") else { return false }
        while true {
            // A value is expected here.
            skipSpace()
            guard let byte = current else { return false }
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                output.append(byte)
                index += 1
                skipSpace()
                let close = byte == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                if take(close) { break }
                open.append(byte)
                if byte == UInt8(ascii: "{"), !member() { return false }
                continue
            case UInt8(ascii: "\""):
                guard string() else { return false }
            case UInt8(ascii: "t"): guard literal("true") else { return false }
            case UInt8(ascii: "f"): guard literal("false") else { return false }
            case UInt8(ascii: "n"): guard literal("null") else { return false }
            default: guard number() else { return false }
            }
            // After a value: the next member or element, or the end of containers.
            while true {
                skipSpace()
                guard let container = open.last else {
                    return index == input.count
                }
                if take(UInt8(ascii: ",")) {
                    if container == UInt8(ascii: "{"), !member() { return false }
                    break
                }
                guard take(container == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")) else { return false }
                open.removeLast()
            }
        }
    }

    /// A key and its colon; the value follows.
    private mutating func member() -> Bool {
        skipSpace()
        guard current == UInt8(ascii: "\""), string() else { return false }
        skipSpace()
        return take(UInt8(ascii: ":"))
    }

    private mutating func literal(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard input.count - index >= count else { return false }
        for offset in 0..<count where input[index + offset] != word.utf8Start[offset] { return false }
        output.append(contentsOf: input[index..<(index + count)])
        index += count
        return true
    }

    private mutating func digits() -> Bool {
        let start = index
        while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { index += 1 }
        return index > start
    }

    private mutating func number() -> Bool {
        let start = index
        if current == UInt8(ascii: "-") { index += 1 }
        if current == UInt8(ascii: "0") {
            index += 1
        } else {
            guard digits() else { return false }
        }
        if current == UInt8(ascii: ".") {
            index += 1
            guard digits() else { return false }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            guard digits() else { return false }
        }
        output.append(contentsOf: input[start..<index])
        return true
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    private mutating func escape(_ unit: UInt16) {
        output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u")])
        for shift in stride(from: 12, through: 0, by: -4) { output.append(Self.hexDigits[Int((unit >> UInt16(shift)) & 0xF)]) }
    }

    private static func isHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
    }

    private mutating func string() -> Bool {
        output.append(UInt8(ascii: "\""))
        index += 1
        while let byte = current {
            switch byte {
            case UInt8(ascii: "\""):
                output.append(byte)
                index += 1
                return true
            case UInt8(ascii: "\\"):
                guard index + 1 < input.count else { return false }
                let kind = input[index + 1]
                switch kind {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"),
                    UInt8(ascii: "r"), UInt8(ascii: "t"):
                    output.append(contentsOf: input[index..<(index + 2)])
                    index += 2
                case UInt8(ascii: "u"):
                    guard index + 6 <= input.count, input[(index + 2)..<(index + 6)].allSatisfy(Self.isHex) else { return false }
                    output.append(contentsOf: input[index..<(index + 6)])
                    index += 6
                default:
                    return false
                }
            case 0x00..<0x20:
                return false
            case 0x20..<0x7F:
                output.append(byte)
                index += 1
            case 0x7F:
                escape(0x7F)
                index += 1
            default:
                guard let scalar = scalar() else { return false }
                for unit in scalar.utf16 { escape(unit) }
            }
        }
        return false
    }

    /// Decodes one multi-byte UTF-8 sequence (shortest form, no surrogates); nil if invalid.
    private mutating func scalar() -> Unicode.Scalar? {
        let lead = input[index]
        let count: Int
        var value: UInt32
        switch lead {
        case 0xC2...0xDF: (count, value) = (2, UInt32(lead & 0x1F))
        case 0xE0...0xEF: (count, value) = (3, UInt32(lead & 0x0F))
        case 0xF0...0xF4: (count, value) = (4, UInt32(lead & 0x07))
        default: return nil
        }
        guard index + count <= input.count else { return nil }
        for offset in 1..<count {
            let byte = input[index + offset]
            guard byte & 0xC0 == 0x80 else { return nil }
            value = value << 6 | UInt32(byte & 0x3F)
        }
        let shortest: UInt32 = count == 2 ? 0x80 : count == 3 ? 0x800 : 0x10000
        guard value >= shortest, let scalar = Unicode.Scalar(value) else { return nil }
        index += count
        return scalar
    }
}
