import FerryCore
import FerryProtocol
import Foundation
import HTTPTypes
import RawStructuredFieldValues

extension HTTPField.Name {
    public static let uploadDraftInteropVersion = Self("Upload-Draft-Interop-Version")!
    public static let uploadComplete = Self("Upload-Complete")!
    public static let uploadIncomplete = Self("Upload-Incomplete")!
    static let contentDigest = Self("Content-Digest")!
    static let wantReprDigest = Self("Want-Repr-Digest")!
}

/// The draft interop versions Ferry speaks (`Upload-Draft-Interop-Version`).
public enum InteropVersion: Int, Sendable, CaseIterable, Comparable {
    /// draft -01: iOS 17 / macOS 14. `Upload-Incomplete` (inverted), any append content type.
    case v3 = 3
    /// draft -03: iOS 18.0. `Upload-Complete`.
    case v5 = 5
    /// drafts -04/-05: iOS 18.1+. `application/partial-upload`, `Upload-Length`, `Upload-Limit` (`expires`).
    case v6 = 6
    /// drafts -06 to -08: the limit `expires` is called `max-age`.
    case v7 = 7
    /// drafts -09 to -11: iOS 26.
    case v8 = 8
    /// draft -12: GET retrieves the offset like HEAD, error answers say `Upload-Complete: ?0`,
    /// a 413 names the limits, and the `completed-upload` problem type is gone.
    case v9 = 9

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The form of RUFH one request speaks: a draft interop version, or (nil) the final RFC, which
/// is the latest draft without the interop field.
public struct RUFHForm: Sendable, Equatable {
    public var interop: InteropVersion?

    public init(interop: InteropVersion?) { self.interop = interop }

    /// Reads `Upload-Draft-Interop-Version`; an unknown version is refused, not guessed.
    init(_ fields: HTTPFields) throws(FerryError) {
        guard let text = fields[.uploadDraftInteropVersion] else {
            interop = nil
            return
        }
        guard let number = Int(text.trimmingCharacters(in: .whitespaces)), let version = InteropVersion(rawValue: number) else {
            let known = InteropVersion.allCases.map { String($0.rawValue) }.joined(separator: ", ")
            throw FerryError(.unsupportedInteropVersion, "Upload-Draft-Interop-Version \(text) is not spoken here (\(known), or none for the final RFC)")
        }
        interop = version
    }

    /// Draft -01 says `Upload-Incomplete: ?1` where later ones say `Upload-Complete: ?0`.
    var usesIncomplete: Bool { interop == .v3 }
    /// From interop 6, appends are `Content-Type: application/partial-upload`.
    var requiresPartialUploadType: Bool { interop.map { $0 >= .v6 } ?? true }
    /// From interop 6: `Upload-Limit` and `Upload-Length` in responses.
    var announcesLimits: Bool { interop.map { $0 >= .v6 } ?? true }
    /// Progress `104`s during long appends: from interop 6 (earlier clients expect a single
    /// `104`, the one with `Location`).
    var sendsProgress: Bool { interop.map { $0 >= .v6 } ?? true }
    /// The limit key of an upload's remaining lifetime.
    var ageKey: String { interop == .v6 ? "expires" : "max-age" }
    /// Drafts -01 to -05 (interop 3, 5, 6): HEAD and DELETE must not carry `Upload-Offset` or
    /// `Upload-Complete` (`Upload-Incomplete`), and the server answers such a request 400.
    var forbidsUploadFieldsOnHeadAndDelete: Bool { interop.map { $0 <= .v6 } ?? false }
    /// Draft -12 and the final text (the editor's copy the RFC grows from): an error answer is the
    /// resumable-upload protocol's, so `Upload-Complete: ?0`; a 413 for a limit carries
    /// `Upload-Limit`; no `completed-upload` problem type.
    var followsNewestText: Bool { interop.map { $0 >= .v9 } ?? true }

    /// Whether the request says the upload ends with its body; nil when it does not say.
    func complete(_ fields: HTTPFields) throws(FerryError) -> Bool? {
        if usesIncomplete {
            guard let text = fields[.uploadIncomplete] else { return nil }
            return !(try StructuredField.bool(text, "Upload-Incomplete"))
        }
        guard let text = fields[.uploadComplete] else { return nil }
        return try StructuredField.bool(text, "Upload-Complete")
    }

    /// Sets `Upload-Complete` (or `Upload-Incomplete`) on a response.
    func setComplete(_ complete: Bool, in fields: inout HTTPFields) {
        if usesIncomplete {
            fields[.uploadIncomplete] = complete ? "?0" : "?1"
        } else {
            fields[.uploadComplete] = complete ? "?1" : "?0"
        }
    }

    /// Echoes the interop version on a response.
    func echo(in fields: inout HTTPFields) {
        if let interop { fields[.uploadDraftInteropVersion] = String(interop.rawValue) }
    }
}

/// RFC 8941/9651 structured field values, as far as RUFH and RFC 9530 use them.
enum StructuredField {
    static func item(_ text: String, _ name: String) throws(FerryError) -> RFC9651BareItem {
        do {
            var parser = StructuredFieldValueParser(Array(text.utf8))
            return try parser.parseItemFieldValue().rfc9651BareItem
        } catch {
            throw FerryError(.invalidOffset, "\(name) is not a structured field item: \(text)")
        }
    }

    /// `?0` or `?1`.
    static func bool(_ text: String, _ name: String) throws(FerryError) -> Bool {
        guard case .bool(let value) = try item(text, name) else {
            throw FerryError(.invalidLength, "\(name) is a structured boolean: ?0 or ?1")
        }
        return value
    }

    /// A non-negative structured integer.
    static func integer(_ text: String, _ name: String, _ code: FerryError.Code) throws(FerryError) -> Int64 {
        let parsed: RFC9651BareItem
        do {
            parsed = try item(text, name)
        } catch {
            throw FerryError(code, "\(name) must be a non-negative integer")
        }
        guard case .integer(let value) = parsed, value >= 0 else {
            throw FerryError(code, "\(name) must be a non-negative integer")
        }
        return value
    }

    /// A dictionary of digests (`sha-256=:<base64>:, sha-512=:<base64>:`), keys lowercased.
    static func digests(_ text: String, _ name: String) throws(FerryError) -> [String: [UInt8]] {
        try DigestField.parse(text, name)
    }

    /// The keys of a preference dictionary (`Want-Repr-Digest: sha-256=1, sha-512=3`) with a
    /// weight above 0; nil when the field is malformed (a preference can be ignored).
    static func wanted(_ text: String) -> Set<String>? {
        var parser = StructuredFieldValueParser(Array(text.utf8))
        guard let dictionary = try? parser.parseDictionaryFieldValue() else { return nil }
        var keys = Set<String>()
        for (key, value) in dictionary {
            if case .item(let item) = value, case .integer(let weight) = item.rfc9651BareItem, weight == 0 { continue }
            keys.insert(key.lowercased())
        }
        return keys
    }

    /// A structured byte sequence `:<base64>:`.
    static func byteSequence(_ bytes: [UInt8]) -> String {
        ":" + Data(bytes).base64EncodedString() + ":"
    }
}

/// The RFC 9530 algorithms a digest is checked with; others are ignored, as the RFC allows.
enum DigestAlgorithm {
    static func checksum(from digests: [String: [UInt8]]) -> ChecksumExpectation? {
        if let digest = digests["sha-256"] { return ChecksumExpectation(algorithm: .sha256, digest: digest) }
        if let digest = digests["sha-512"] { return ChecksumExpectation(algorithm: .sha512, digest: digest) }
        return nil
    }
}
