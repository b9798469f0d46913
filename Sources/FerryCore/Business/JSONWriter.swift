/// Writes the small JSON objects of events and callbacks by hand: on the upload path,
/// `JSONEncoder` costs more than everything else Ferry does for an event.
public struct JSONWriter {
    public private(set) var text = "{"
    private var first = true

    public init() {}

    public mutating func key(_ name: String) {
        if !first { text += "," }
        first = false
        Self.quote(name, into: &text)
        text += ":"
    }

    public mutating func string(_ name: String, _ value: String?) {
        guard let value else { return }
        key(name)
        Self.quote(value, into: &text)
    }

    public mutating func number(_ name: String, _ value: Int64?) {
        guard let value else { return }
        key(name)
        text += String(value)
    }

    /// A nested object or other JSON already written.
    public mutating func raw(_ name: String, _ json: String) {
        key(name)
        text += json
    }

    public mutating func object(_ name: String, _ values: [(String, String)]) {
        var nested = JSONWriter()
        for (key, value) in values { nested.string(key, value) }
        raw(name, nested.finish())
    }

    public func finish() -> String { text + "}" }

    /// A JSON string literal: quotes, backslashes and control characters escaped; other
    /// characters as they are (UTF-8).
    public static func quote(_ value: String, into text: inout String) {
        text += "\""
        // Most values (ids, names, digests, times) need no escape: appended whole, not per scalar.
        guard value.utf8.contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 < 0x20 }) else {
            text += value
            text += "\""
            return
        }
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }
}
