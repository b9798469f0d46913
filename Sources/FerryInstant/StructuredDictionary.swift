import Foundation

/// The few RFC 8941 dictionary members the instant-upload fields use: byte sequences, strings
/// without escapes, integers, tokens and booleans; parameters and inner lists are refused.
enum StructuredDictionary {
    enum Value: Equatable {
        case bytes([UInt8])
        case string(String)
        case integer(Int64)
        case token(String)
        case boolean(Bool)
    }

    /// The members of `text` by key (a repeated key keeps its last value); nil when malformed.
    static func parse(_ text: String) -> [String: Value]? {
        var members: [String: Value] = [:]
        var rest = Substring(text.trimmingSpaces)
        while !rest.isEmpty {
            guard let equals = rest.firstIndex(of: "=") else { return nil }
            let key = rest[..<equals]
            guard isKey(key) else { return nil }
            rest = rest[rest.index(after: equals)...]
            guard let (value, after) = value(rest) else { return nil }
            members[String(key)] = value
            rest = Substring(after.trimmingSpaces)
            if rest.isEmpty { break }
            guard rest.first == "," else { return nil }
            rest = Substring(rest.dropFirst().trimmingSpaces)
            if rest.isEmpty { return nil }
        }
        return members
    }

    static func value(_ text: Substring) -> (Value, Substring)? {
        guard let first = text.first else { return nil }
        switch first {
        case ":":
            let body = text.dropFirst()
            guard let end = body.firstIndex(of: ":"), let bytes = Base64.decode(body[..<end]) else { return nil }
            return (.bytes(bytes), body[body.index(after: end)...])
        case "?":
            guard let flag = text.dropFirst().first, flag == "0" || flag == "1" else { return nil }
            return (.boolean(flag == "1"), text.dropFirst(2))
        case "\"":
            let body = text.dropFirst()
            guard let end = body.firstIndex(of: "\"") else { return nil }
            let string = body[..<end]
            guard string.utf8.allSatisfy({ (0x20...0x7e).contains($0) && $0 != UInt8(ascii: "\\") }) else { return nil }
            return (.string(String(string)), body[body.index(after: end)...])
        default:
            let end = text.firstIndex { $0 == "," || $0 == " " || $0 == "\t" } ?? text.endIndex
            let item = text[..<end]
            if let number = integer(item) { return (.integer(number), text[end...]) }
            guard let head = item.utf8.first, isAlpha(head) || head == UInt8(ascii: "*"),
                item.utf8.allSatisfy({ isAlpha($0) || isDigit($0) || Array(":/!#$%&'*+-.^_`|~".utf8).contains($0) })
            else { return nil }
            return (.token(String(item)), text[end...])
        }
    }

    /// An sf-integer: an optional `-` and 1 to 15 digits.
    static func integer(_ text: Substring) -> Int64? {
        let digits = text.hasPrefix("-") ? text.dropFirst() : text
        guard (1...15).contains(digits.utf8.count), digits.utf8.allSatisfy(isDigit) else { return nil }
        return Int64(text)
    }

    static func isKey(_ key: Substring) -> Bool {
        guard let head = key.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(head) || head == UInt8(ascii: "*") else { return false }
        return key.utf8.allSatisfy { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || isDigit($0) || Array("_-.*".utf8).contains($0) }
    }

    static func isAlpha(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }

    static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
}

/// Standard Base64 with padding, as RFC 8941 byte sequences use it.
enum Base64 {
    static func encode(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    static func decode(_ text: Substring) -> [UInt8]? {
        guard text.utf8.count % 4 == 0, let data = Data(base64Encoded: String(text)) else { return nil }
        return Array(data)
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        let isSpace = { (character: Character) in character == " " || character == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
