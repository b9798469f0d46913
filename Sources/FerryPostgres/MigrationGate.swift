import FerryCore

/// Holds catalog calls until `PostgresCatalog.run()` has applied the migrations, or fails
/// them with the reason it could not. The first outcome is final.
///
/// Waiting is not cancellable: it lasts at most as long as the migrations, which end (or fail)
/// within the pool's connect timeout when the database cannot be reached.
final class MigrationGate: Sendable {
    private let outcome = OneShot<Result<Void, FerryError>>()

    /// Returns once the migrations are applied; throws if they failed.
    func wait() async throws(FerryError) {
        try await outcome.value.get()
    }

    /// Opens the gate (`.success`) or fails it; later calls change nothing.
    func finish(_ result: Result<Void, FerryError>) {
        outcome.fulfill(result)
    }
}
