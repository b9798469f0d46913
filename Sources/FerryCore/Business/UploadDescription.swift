import Foundation

/// An upload as business systems see it: in event payloads and `pre-finish` callbacks.
public struct UploadDescription: Sendable, Codable, Equatable {
    public var id: String
    public var scenario: String
    public var owner: String?
    public var length: Int64?
    public var offset: Int64
    public var size: Int64?
    public var state: String
    /// Values decoded as UTF-8 (Base64 where they are not text).
    public var metadata: [String: String]
    public var sha256: String?
    public var location: String?
    public var createdAt: String

    public init(_ record: UploadRecord, location: String? = nil) {
        id = record.id.rawValue
        scenario = record.scenario
        owner = record.owner
        length = record.length
        offset = record.offset
        size = record.isComplete ? record.offset : nil
        state = record.state.rawValue
        var values: [String: String] = [:]
        for entry in record.metadata.entries {
            guard let value = entry.value else { values[entry.key] = ""; continue }
            values[entry.key] = String(validating: value, as: UTF8.self) ?? Data(value).base64EncodedString()
        }
        metadata = values
        sha256 = record.sha256
        self.location = location
        createdAt = Self.timestamp(record.createdAt)
    }

    /// RFC 3339 with milliseconds, UTC.
    public static func timestamp(_ date: Date) -> String {
        Timestamp.millisecondsUTC(date)
    }
}

extension UploadDescription {
    /// The object as JSON (fields in a fixed order; absent values omitted).
    public func json() -> String {
        var writer = JSONWriter()
        writer.string("id", id)
        writer.string("scenario", scenario)
        writer.string("owner", owner)
        writer.number("length", length)
        writer.number("offset", offset)
        writer.number("size", size)
        writer.string("state", state)
        writer.object("metadata", metadata.sorted { $0.key < $1.key })
        writer.string("sha256", sha256)
        writer.string("location", location)
        writer.string("createdAt", createdAt)
        return writer.finish()
    }
}

/// The JSON body of one event.
struct EventPayload {
    var id: String
    var type: String
    var sequence: Int64
    var createdAt: String
    var upload: UploadDescription

    func json() -> String {
        var writer = JSONWriter()
        writer.string("id", id)
        writer.string("type", type)
        writer.number("sequence", sequence)
        writer.string("createdAt", createdAt)
        writer.raw("upload", upload.json())
        return writer.finish()
    }
}

/// The JSON body of a `pre-finish` callback.
public struct PreFinishPayload {
    public var upload: UploadDescription

    public init(upload: UploadDescription) { self.upload = upload }

    public func json() -> Data {
        var writer = JSONWriter()
        writer.raw("upload", upload.json())
        return Data(writer.finish().utf8)
    }
}
