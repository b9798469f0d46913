import Foundation

/// A snapshot of an upload's progress, as `Upload.progress` reports it.
public struct UploadProgress: Sendable, Equatable {
    /// Bytes the server acknowledged (stored durably).
    public var acknowledged: Int64
    /// Bytes of the request in flight handed to the network, beyond `acknowledged`.
    public var inFlight: Int64
    public var total: Int64
    /// Smoothed goodput of recent successful requests, bytes per second.
    public var bytesPerSecond: Double?
    public var phase: UploadMachine.Phase
    /// Failed requests so far.
    public var failures: Int
    /// The server held the content and a proof of possession completed the upload without
    /// its bytes (instant upload).
    public var storedInstantly = false

    /// Estimated seconds left at the current rate.
    public var eta: Double? {
        guard let rate = bytesPerSecond, rate > 0 else { return nil }
        return Double(total - acknowledged - inFlight) / rate
    }
}

/// The outcome of a finished upload.
public struct UploadResult: Sendable, Equatable {
    public var url: URL
    public var length: Int64
    /// Requests made, failed requests, and bytes sent more than once (for measurements).
    public var requests: Int
    public var failures: Int
    public var bytesSent: Int64
    /// The fields of the final response (what the server returned on completion), such as
    /// `ferryBusinessStatus`.
    public var finalFields: UploadFields
    /// The resume record left in place because `UploadOptions.keepsResumeRecord` asked (the
    /// caller removes it once it recorded the result).
    var keptResumeRecord: String?
    /// The server held the content and a proof of possession completed the upload: none of
    /// the file's bytes were sent (instant upload).
    public var storedInstantly = false
}
