import Foundation

/// RFC 3339 timestamps with milliseconds in UTC (`2026-12-06T23:29:49.123Z`), written by hand:
/// every event payload and callback carries two, and `Date.ISO8601FormatStyle` costs microseconds
/// each. The same text as `ISO8601FormatStyle(includingFractionalSeconds: true)`, which also
/// truncates to the millisecond; dates outside 1970–9999 are left to it.
public enum Timestamp {
    public static func millisecondsUTC(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        guard interval >= 0, interval < 253_402_300_800 else {
            return date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        }
        let whole = interval.rounded(.down)
        let milliseconds = min(999, Int((interval - whole) * 1000))
        let seconds = Int64(whole)
        let days = seconds / 86_400
        let ofDay = Int(seconds - days * 86_400)
        let (year, month, day) = civil(days)
        var bytes = [UInt8]()
        bytes.reserveCapacity(24)
        func put(_ value: Int, _ width: Int) {
            var digits = [UInt8](repeating: UInt8(ascii: "0"), count: width)
            var rest = value
            for position in stride(from: width - 1, through: 0, by: -1) {
                digits[position] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            }
            bytes += digits
        }
        put(Int(year), 4)
        bytes.append(UInt8(ascii: "-"))
        put(month, 2)
        bytes.append(UInt8(ascii: "-"))
        put(day, 2)
        bytes.append(UInt8(ascii: "T"))
        put(ofDay / 3600, 2)
        bytes.append(UInt8(ascii: ":"))
        put(ofDay / 60 % 60, 2)
        bytes.append(UInt8(ascii: ":"))
        put(ofDay % 60, 2)
        bytes.append(UInt8(ascii: "."))
        put(milliseconds, 3)
        bytes.append(UInt8(ascii: "Z"))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The Gregorian date `days` (≥ 0) after 1970-01-01 (the inverse of "days from civil").
    static func civil(_ days: Int64) -> (year: Int64, month: Int, day: Int) {
        let shifted = days + 719_468
        let era = shifted / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * monthIndex + 2) / 5 + 1)
        let month = Int(monthIndex < 10 ? monthIndex + 3 : monthIndex - 9)
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
