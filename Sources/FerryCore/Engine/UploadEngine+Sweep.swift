import Foundation
import Logging

extension UploadEngine {
    /// Deletes stored bytes that no live upload owns: files of uploads whose creation crashed
    /// before the catalog recorded them, and leftovers of terminated or expired uploads.
    /// Only bytes untouched for `age` are considered, so a creation in flight is never swept.
    @discardableResult
    public func sweepOrphans(olderThan age: Duration) async -> Int {
        guard let enumerable = store as? any EnumerableByteStore else { return 0 }
        let cutoff = now().addingTimeInterval(-Double(age.components.seconds))
        var swept = 0
        do {
            for (id, modified) in try await enumerable.storedUploads() where modified < cutoff {
                let deleted = try await withLock(id, onStop: {}) { (hold: Hold) async throws(FerryError) -> Bool in
                    if let record = try await self.catalog.get(id), !record.state.isGone { return false }
                    try await self.store.delete(id)
                    return true
                }
                if deleted {
                    swept += 1
                    logger.notice("store.orphan_deleted", metadata: ["upload.id": "\(id)"])
                }
            }
            let leftovers = try await enumerable.sweepLeftovers(before: cutoff)
            if leftovers > 0 { logger.notice("store.leftovers_deleted", metadata: ["count": "\(leftovers)"]) }
        } catch {
            logger.error("sweep.failed", metadata: ["error": "\(error)"])
        }
        return swept
    }
}
