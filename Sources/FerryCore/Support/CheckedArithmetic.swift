import Foundation

/// Arithmetic on numbers a client supplied (offsets, lengths, ranges, limits, query values).
///
/// Swift traps on overflow, and a trap kills the whole server: every sum, difference or
/// product that involves a client's number goes through these helpers, which turn an overflow
/// into a `FerryError` (a 4xx) or, where a bound is the right answer, saturate.
extension Int64 {
    /// `self + other`, or `code` when the sum does not fit.
    @inlinable
    public func adding(_ other: Int64, or code: FerryError.Code, _ message: @autoclosure () -> String) throws(FerryError) -> Int64 {
        let (value, overflow) = addingReportingOverflow(other)
        if overflow { throw FerryError(code, message()) }
        return value
    }

    /// `self - other`, or `code` when the difference does not fit.
    @inlinable
    public func subtracting(_ other: Int64, or code: FerryError.Code, _ message: @autoclosure () -> String) throws(FerryError) -> Int64 {
        let (value, overflow) = subtractingReportingOverflow(other)
        if overflow { throw FerryError(code, message()) }
        return value
    }

    /// `self * other`, or `code` when the product does not fit.
    @inlinable
    public func multiplied(by other: Int64, or code: FerryError.Code, _ message: @autoclosure () -> String) throws(FerryError) -> Int64 {
        let (value, overflow) = multipliedReportingOverflow(by: other)
        if overflow { throw FerryError(code, message()) }
        return value
    }

    /// `self + other`, held at `Int64.max` / `Int64.min` instead of overflowing.
    @inlinable
    public func saturatingAdding(_ other: Int64) -> Int64 {
        let (value, overflow) = addingReportingOverflow(other)
        guard overflow else { return value }
        return other > 0 ? .max : .min
    }

    /// `self - other`, held at the bounds instead of overflowing.
    @inlinable
    public func saturatingSubtracting(_ other: Int64) -> Int64 {
        let (value, overflow) = subtractingReportingOverflow(other)
        guard overflow else { return value }
        return other < 0 ? .max : .min
    }

    /// The value of a floating-point number rounded towards zero, or nil when it is not finite
    /// or out of range (where `Int64(_:)` would trap).
    @inlinable
    public init?(checking value: Double) {
        // 2^63 is exactly representable; every double below it converts.
        guard value.isFinite, value > -9_223_372_036_854_775_808.0, value < 9_223_372_036_854_775_808.0 else { return nil }
        self.init(value)
    }

    /// A floating-point number converted, held at the bounds (NaN is 0): for values the server
    /// derived itself that must never trap.
    @inlinable
    public init(clamping value: Double) {
        if value.isNaN {
            self = 0
        } else if let exact = Int64(checking: value) {
            self = exact
        } else {
            self = value < 0 ? .min : .max
        }
    }
}

extension Sequence where Element == Int64 {
    /// The sum, held at the bounds instead of overflowing.
    @inlinable
    public func saturatingSum() -> Int64 { reduce(0) { $0.saturatingAdding($1) } }
}

/// Times a client may name (queries): between 1970 and 9999, where every conversion is safe.
public enum ClientTime {
    /// The latest Unix time accepted (9999-12-31T23:59:59Z).
    public static let latestSeconds: Double = 253_402_300_799

    /// A date from Unix seconds, or nil outside 1970...9999 (or not a number).
    public static func date(unixSeconds value: Double) -> Date? {
        guard value.isFinite, value >= 0, value <= latestSeconds else { return nil }
        return Date(timeIntervalSince1970: value)
    }

    /// True when `date` lies in the accepted range.
    public static func isAcceptable(_ date: Date) -> Bool {
        date.timeIntervalSince1970 >= 0 && date.timeIntervalSince1970 <= latestSeconds
    }
}
