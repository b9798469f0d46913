import Foundation

/// Client-supplied key/value metadata of an upload, in the order the client sent it.
///
/// Values are arbitrary bytes (a key may have no value). The canonical serialisation is
/// the tus `Upload-Metadata` form (`key base64,key2 base64,flag`), which is also how
/// catalogs store it.
public struct UploadMetadata: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: [UInt8]?

        public init(key: String, value: [UInt8]?) {
            self.key = key
            self.value = value
        }
    }

    public private(set) var entries: [Entry]

    public init() { self.entries = [] }

    /// Builds metadata from entries; keys must be unique, non-empty, without space or comma.
    public init(entries: [Entry]) throws(FerryError) {
        var seen = Set<String>()
        for entry in entries {
            guard Self.isValidKey(entry.key) else {
                throw FerryError(.invalidMetadata, "metadata key is empty or contains a space, comma or control character")
            }
            guard seen.insert(entry.key).inserted else {
                throw FerryError(.invalidMetadata, "metadata key appears twice")
            }
        }
        self.entries = entries
    }

    /// Parses the tus `Upload-Metadata` header value strictly: malformed input is an error.
    public init(tusHeader: String) throws(FerryError) {
        let trimmed = tusHeader.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty {
            self.init()
            return
        }
        var entries = [Entry]()
        for pair in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = pair.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: false)
            guard let key = parts.first, !key.isEmpty, parts.count <= 2 else {
                throw FerryError(.invalidMetadata, "each metadata pair is a key, a space and a Base64 value")
            }
            if parts.count == 1 || parts[1].isEmpty {
                entries.append(Entry(key: String(key), value: parts.count == 1 ? nil : []))
                continue
            }
            guard let data = Data(base64Encoded: String(parts[1])) else {
                throw FerryError(.invalidMetadata, "a metadata value is not standard Base64")
            }
            entries.append(Entry(key: String(key), value: Array(data)))
        }
        try self.init(entries: entries)
    }

    /// The canonical tus serialisation.
    public var tusHeader: String {
        entries.map { entry in
            guard let value = entry.value else { return entry.key }
            return value.isEmpty ? "\(entry.key) " : "\(entry.key) \(Data(value).base64EncodedString())"
        }.joined(separator: ",")
    }

    public var isEmpty: Bool { entries.isEmpty }

    /// Refuses metadata larger than `total` bytes (keys and decoded values) or with one entry
    /// larger than `perEntry`: it is stored and echoed on every HEAD.
    public func checkSize(total: Int, perEntry: Int) throws(FerryError) {
        var sum = 0
        for entry in entries {
            let size = entry.key.utf8.count + (entry.value?.count ?? 0)
            guard size <= perEntry else {
                throw FerryError(.metadataTooLarge, "the metadata entry \(entry.key) is larger than \(perEntry) bytes")
            }
            sum += size
        }
        guard sum <= total else {
            throw FerryError(.metadataTooLarge, "the metadata is larger than \(total) bytes")
        }
    }

    /// The value of `key` decoded as UTF-8, if present and valid.
    public func string(_ key: String) -> String? {
        guard let value = entries.first(where: { $0.key == key })?.value else { return nil }
        return String(validating: value, as: UTF8.self)
    }

    /// True when `key` is present (with or without a value).
    public func contains(_ key: String) -> Bool {
        entries.contains { $0.key == key }
    }

    /// Sets `key` to `value`, replacing an existing entry in place or appending.
    public mutating func set(_ key: String, _ value: String) throws(FerryError) {
        guard Self.isValidKey(key) else {
            throw FerryError(.invalidMetadata, "metadata key is empty or contains a space, comma or control character")
        }
        if let index = entries.firstIndex(where: { $0.key == key }) {
            entries[index].value = Array(value.utf8)
        } else {
            entries.append(Entry(key: key, value: Array(value.utf8)))
        }
    }

    static func isValidKey(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.allSatisfy { $0 > 0x20 && $0 != 0x2C && $0 != 0x7F }
    }
}
