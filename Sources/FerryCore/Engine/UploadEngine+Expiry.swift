import Foundation
import Logging

extension UploadEngine {
    /// Deletes the data of incomplete uploads past their expiry (leaving tombstones that
    /// answer 410), then purges old tombstones. Returns how many uploads expired.
    @discardableResult
    public func expireDue(batch: Int = 200) async -> Int {
        var expired = 0
        do {
            for candidate in try await catalog.expiring(before: now(), limit: batch) {
                let done = try await withLock(candidate.id, onStop: {}) { (hold: Hold) async throws(FerryError) -> Bool in
                    // Re-read under the lock: a request may have just stored more bytes.
                    guard let record = try await self.catalog.get(candidate.id), record.state == .incomplete,
                        let expiresAt = record.expiresAt, expiresAt <= self.now()
                    else { return false }
                    var expired = record
                    expired.state = .expired
                    expired.updatedAt = self.now()
                    expired.expiresAt = nil
                    try await self.removeBytes(of: record) { () async throws(FerryError) in _ = try await self.save(record, expired, hold) }
                    self.digests.forget(record.id)
                    self.observers.ended(record.id, at: expired.updatedAt, state: .expired)
                    return true
                }
                if done {
                    expired += 1
                    logger.debug("upload.expired", metadata: ["upload.id": "\(candidate.id)"])
                }
            }
            let retention = configuration.tombstoneRetention.components.seconds
            for id in try await catalog.tombstones(before: now().addingTimeInterval(-Double(retention)), limit: batch) {
                try await catalog.remove(id)
            }
        } catch {
            logger.error("expiry.failed", metadata: ["error": "\(error)"])
        }
        return expired
    }
}
