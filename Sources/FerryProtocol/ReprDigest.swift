import FerryCore
import Foundation
import HTTPTypes
import RawStructuredFieldValues

extension HTTPField.Name {
    /// RFC 9530's digest of the whole upload: checked when the upload completes (RUFH on any
    /// request; tus and RUFH alike when it comes with the creation, docs/instant-upload.md).
    public static let reprDigest = Self("Repr-Digest")!
}

/// RFC 9530 digest fields (`Repr-Digest`, `Content-Digest`): a dictionary of byte sequences.
public enum DigestField {
    /// The digests of `text` by algorithm (`sha-256=:<base64>:, sha-512=:<base64>:`), keys
    /// lowercased; `ERR_INVALID_CHECKSUM` naming `name` when malformed.
    public static func parse(_ text: String, _ name: String) throws(FerryError) -> [String: [UInt8]] {
        let dictionary: OrderedMap<String, ItemOrInnerList>
        do {
            var parser = StructuredFieldValueParser(Array(text.utf8))
            dictionary = try parser.parseDictionaryFieldValue()
        } catch {
            throw FerryError(.invalidChecksum, "\(name) is a dictionary of byte sequences: sha-256=:<base64>:")
        }
        var digests: [String: [UInt8]] = [:]
        for (key, value) in dictionary {
            guard case .item(let item) = value, case .undecodedByteSequence(let base64) = item.rfc9651BareItem,
                let bytes = Data(base64Encoded: base64)
            else {
                throw FerryError(.invalidChecksum, "\(name): \(key) is not a byte sequence")
            }
            digests[key.lowercased()] = Array(bytes)
        }
        return digests
    }

    /// The SHA-256 a creation announces for the whole file (`Repr-Digest`); nil without the
    /// field or without a `sha-256` member (other algorithms are ignored, as RFC 9530 allows).
    public static func announcedSHA256(_ fields: HTTPFields) throws(FerryError) -> [UInt8]? {
        guard let text = fields[.reprDigest] else { return nil }
        guard let digest = try parse(text, "Repr-Digest")["sha-256"] else { return nil }
        guard digest.count == 32 else { throw FerryError(.invalidChecksum, "Repr-Digest: sha-256 is 32 bytes") }
        return digest
    }
}
