/// Exclusive access to one upload, where the newest request wins.
///
/// A mobile client often reconnects while the server still holds its dead request. Acquiring
/// a lock therefore never waits for a timeout: it asks the current holder to stop (the
/// holder saves what it has and releases), then takes over.
public protocol UploadLocker: Sendable {
    /// Acquires the upload's lock, asking any holder to stop first.
    ///
    /// - Parameters:
    ///   - onStopRequest: called (at most once, from any task) when a newer request wants
    ///     the lock. The holder should finish quickly and release.
    ///   - timeout: how long to wait for the previous holder to release.
    /// - Throws: `ERR_UPLOAD_LOCKED` when the holder does not release in time,
    ///   `ERR_REQUEST_SUPERSEDED` when an even newer request arrived while waiting.
    func lock(
        _ id: UploadID,
        timeout: Duration,
        onStopRequest: @escaping @Sendable () -> Void
    ) async throws(FerryError) -> any UploadLease
}

/// A held upload lock.
public protocol UploadLease: Sendable {
    /// Releases the lock; idempotent.
    func release() async
}
