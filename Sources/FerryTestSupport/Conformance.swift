/// A failed conformance check, with where it was made.
public struct ConformanceFailure: Error, CustomStringConvertible {
    public let message: String
    public let file: String
    public let line: Int

    public var description: String { "\(file):\(line): \(message)" }
}

/// Fails the running conformance check unless `condition` holds.
func require(
    _ condition: Bool,
    _ message: @autoclosure () -> String,
    file: String = #fileID,
    line: Int = #line
) throws {
    guard condition else { throw ConformanceFailure(message: message(), file: file, line: line) }
}

/// Fails unless `body` throws a `FerryError` with `code`.
func requireError<T>(
    _ code: FerryCore.FerryError.Code,
    file: String = #fileID,
    line: Int = #line,
    _ body: () async throws -> T
) async throws {
    do {
        _ = try await body()
    } catch let error as FerryCore.FerryError {
        try require(error.code == code, "expected \(code.rawValue), got \(error)", file: file, line: line)
        return
    }
    throw ConformanceFailure(message: "expected \(code.rawValue), got success", file: file, line: line)
}

import FerryCore

/// One named check of a conformance suite, run on one fresh subject. Test targets run every
/// check against every implementation as its own test case:
/// `@Test(arguments: backends, UploadCatalogConformance.checks)`.
public struct ConformanceCheck<Subject>: Sendable, CustomStringConvertible {
    public let name: String
    let body: @Sendable (Subject) async throws -> Void

    public init(_ name: String, _ body: @escaping @Sendable (Subject) async throws -> Void) {
        self.name = name
        self.body = body
    }

    public var description: String { name }

    /// Runs the check on `subject` (a fresh, empty implementation); throws `ConformanceFailure`.
    public func run(_ subject: Subject) async throws { try await body(subject) }
}

/// A catalog that can do all a server asks of one (the engine's part and the outbox).
public typealias FullCatalog = EngineCatalog & OutboxCatalog
