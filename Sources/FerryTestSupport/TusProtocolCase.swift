import Testing

/// One row of the protocol table: a state, a request, the exact answer expected.
struct ProtocolCase: Sendable, CustomTestStringConvertible {
    enum Setup: Sendable {
        case none
        /// An upload of `length` (nil: deferred) with `sent` bytes stored.
        case upload(length: Int?, sent: Int = 0, metadata: String? = nil, partial: Bool = false)
        /// A final of complete partials of these lengths.
        case final([Int])
        /// A final whose second partial is still incomplete.
        case unfinishedFinal
        case terminated
    }

    enum Target: Sendable {
        case collection
        case upload
        case unknownUpload
        case path(String)
    }

    var name: String
    var setup: Setup = .none
    var method: String
    var target: Target = .upload
    var headers: [(String, String)] = []
    var body: [UInt8] = []
    var status: Int
    /// Headers that must be present with exactly this value ("*": any value).
    var expect: [(String, String)] = []
    /// Headers that must be absent.
    var absent: [String] = []
    /// After the request, HEAD on the upload must report this offset.
    var offsetAfter: Int? = nil

    var testDescription: String { name }
}

let allExtensions =
    "creation,creation-with-upload,creation-defer-length,expiration,checksum,checksum-trailer,termination,concatenation,concatenation-unfinished"

/// sha1 of "hello" and of something else, Base64.
let sha1Hello = "qvTGHdzF6KLavt4PO0gs2a6pQ00="
let sha1Other = "Kq5sNclPz7QV2+lfQIuc6R7oRu0="
let hello = Array("hello".utf8)
let tus = ("Tus-Resumable", "1.0.0")
let octets = ("Content-Type", "application/offset+octet-stream")
