import FerryCore
import FerryS3
import Foundation

/// Where an upload's bytes are in the bucket, as committed in the catalog with its offset
/// (`UploadRecord.storeState`, JSON): the multipart upload and its parts, then a tail of fewer
/// bytes than a part in an object of its own — or, once complete, one object.
///
/// Every byte below `end` is in a listed part, in the tail object, or in the object: never only
/// in a node's spool.
struct S3UploadState: Codable, Equatable, Sendable {
    /// The multipart upload receiving the parts; nil until the first part is sent.
    var multipartID: String?
    /// Uploaded parts, in order, numbered from 1 without gaps.
    var parts: [S3Part] = []
    /// The size of every part but the last, fixed when the multipart upload starts (nodes may be
    /// configured differently; an upload keeps the size it started with).
    var partSize: Int64?
    /// Bytes after the parts, kept in the tail object named by `end`.
    var tailLength: Int64 = 0
    /// Set once the upload is assembled into its object (the parts and tail are gone then).
    var objectLength: Int64?

    var partsLength: Int64 { parts.reduce(0) { $0 + $1.size } }
    var end: Int64 { objectLength ?? partsLength + tailLength }
    var nextPartNumber: Int { (parts.last?.number ?? 0) + 1 }

    init() {}

    /// The state committed in `record`; an empty state for a record that has none yet.
    init(_ record: UploadRecord) throws(FerryError) {
        guard let text = record.storeState else {
            guard record.offset == 0 else {
                throw FerryError(.storageFailure, "the upload has \(record.offset) bytes but no object-store state")
            }
            self.init()
            return
        }
        do {
            self = try JSONDecoder().decode(S3UploadState.self, from: Data(text.utf8))
        } catch {
            throw FerryError(.storageFailure, "the upload's object-store state is unreadable", underlying: error)
        }
        guard end == record.offset else {
            throw FerryError(.storageFailure, "the object-store state ends at \(end), the catalog at \(record.offset)")
        }
    }

    var encoded: String {
        // Encoding plain values and strings cannot fail.
        String(decoding: (try? JSONEncoder().encode(self)) ?? Data(), as: UTF8.self)
    }
}

/// Object names of one upload; every one starts with `object`, so a prefix listing finds them all
/// (ids have a fixed length, so no other upload's names share the prefix).
struct S3UploadKeys: Sendable {
    /// The multipart upload's key, and the complete upload's object.
    let object: String

    init(prefix: String, id: UploadID) {
        object = prefix + id.rawValue
    }

    /// The tail object of a state ending at `end` (a new name per state, so a tail that was
    /// written but never committed cannot overwrite the committed one).
    func tail(end: Int64) -> String { tailPrefix + String(end) }

    var tailPrefix: String { object + ".tail/" }
}
