import ArgumentParser

/// Resolves an option from the command line, then `FERRY_*` environment, then its default.
struct Settings {
    let environment: [String: String]

    func value(_ flag: String?, _ variable: String, default fallback: String) -> String {
        flag ?? environment[variable] ?? fallback
    }

    func value<T>(_ flag: String?, _ variable: String, default fallback: T, parse: (String) -> T?) throws -> T {
        guard let text = flag ?? environment[variable] else { return fallback }
        guard let value = parse(text) else {
            throw ValidationError("invalid value '\(text)' for \(variable.dropFirst(6).lowercased().replacingOccurrences(of: "_", with: "-"))")
        }
        return value
    }

    func flag(_ variable: String) -> Bool {
        guard let value = environment[variable]?.lowercased() else { return false }
        return ["1", "true", "yes", "on"].contains(value)
    }

    /// `500ms`, `30s`, `15m`, `24h`, or plain seconds.
    static func duration(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let number = Double(text.dropLast(suffix.count)), number >= 0, let milliseconds = Self.milliseconds(number * scale) else {
                return nil
            }
            return .milliseconds(milliseconds)
        }
        guard let seconds = Double(text), seconds >= 0, let milliseconds = Self.milliseconds(seconds) else { return nil }
        return .milliseconds(milliseconds)
    }

    /// Whole milliseconds of `seconds`, nil when they do not fit in 63 bits (or are not a number).
    static func milliseconds(_ seconds: Double) -> Int64? {
        let value = (seconds * 1000).rounded(.down)
        guard value.isFinite, value >= 0, value < 9.2e18 else { return nil }
        return Int64(value)
    }

    /// Bytes, or with a binary K/M/G/T suffix.
    static func bytes(_ text: String) -> Int64? {
        let units: [(Character, Int64)] = [("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)]
        let upper = text.uppercased().replacingOccurrences(of: "IB", with: "").replacingOccurrences(of: "B", with: "")
        for (suffix, scale) in units where upper.last == suffix {
            guard let number = Int64(upper.dropLast()), number >= 0 else { return nil }
            let (value, overflow) = number.multipliedReportingOverflow(by: scale)
            return overflow ? nil : value
        }
        guard let value = Int64(upper), value >= 0 else { return nil }
        return value
    }
}
