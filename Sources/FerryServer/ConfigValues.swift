import FerryCore

/// Typed values of the configuration file, with messages that say what was expected.
enum Values {
    static func size(_ text: String, _ key: String, _ fail: (String) -> ConfigurationError) throws(ConfigurationError) -> Int64 {
        let units: [(String, Int64)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
            ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000), ("B", 1),
        ]
        var number = text
        var factor: Int64 = 1
        for (suffix, value) in units where text.hasSuffix(suffix) {
            number = String(text.dropLast(suffix.count))
            factor = value
            break
        }
        guard let count = Int64(number), count > 0, count <= Int64.max / factor else {
            throw fail("\(key): \"\(text)\" is not a size (examples: 512KiB, 50MiB, 2GiB)")
        }
        return count * factor
    }

    static func duration(_ text: String, _ key: String, _ fail: (String) -> ConfigurationError) throws(ConfigurationError) -> Duration {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (suffix, milliseconds) in units where text.hasSuffix(suffix) {
            if let count = Int64(text.dropLast(suffix.count)), count > 0, count <= Int64.max / milliseconds / 1000 {
                return .milliseconds(count * milliseconds)
            }
            break
        }
        throw fail("\(key): \"\(text)\" is not a duration (examples: 250ms, 5s, 10m, 24h, 7d)")
    }

    static func count(_ text: String, _ key: String, _ fail: (String) -> ConfigurationError) throws(ConfigurationError) -> Int64 {
        guard let count = Int64(text), count > 0, count <= Int64(Int32.max) else {
            throw fail("\(key): \"\(text)\" is not a positive whole number")
        }
        return count
    }

    static func bool(_ text: String, _ key: String, _ fail: (String) -> ConfigurationError) throws(ConfigurationError) -> Bool {
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw fail("\(key): \"\(text)\" is not true or false")
        }
    }

    static func url(_ text: String, _ key: String, _ fail: (String) -> ConfigurationError) throws(ConfigurationError) -> String {
        let rest = text.hasPrefix("http://") ? text.dropFirst(7) : text.hasPrefix("https://") ? text.dropFirst(8) : nil
        guard let rest, let host = rest.split(separator: "/", maxSplits: 1).first, !host.isEmpty, !text.contains(" ") else {
            throw fail("\(key): \"\(text)\" is not an http:// or https:// URL")
        }
        return text
    }

    static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    static func isMediaType(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && !parts[1].isEmpty && !text.contains(" ")
    }
}
