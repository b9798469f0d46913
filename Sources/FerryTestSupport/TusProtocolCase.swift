/// One row of the tus protocol table: a state, a request, the exact answer expected. The rows
/// are `TusProtocolTable.cases`; `TusProtocolTable.check(_:over:)` runs one over any
/// `TableTransport` (the in-memory `DialectHarness`, or a live server over a real connection).
public struct TusProtocolCase: Sendable, CustomStringConvertible {
    /// The state a case starts from, built with requests over the same transport.
    public enum Setup: Sendable {
        case none
        /// An upload of `length` (nil: deferred) with `sent` bytes stored.
        case upload(length: Int?, sent: Int = 0, metadata: String? = nil, partial: Bool = false)
        /// A final of complete partials of these lengths.
        case final([Int])
        /// A final whose second partial is still incomplete.
        case unfinishedFinal
        case terminated
    }

    /// Where the request goes.
    public enum Target: Sendable {
        /// The collection, `/files/`.
        case collection
        /// The upload the setup made.
        case upload
        /// An upload that does not exist.
        case unknownUpload
        case path(String)
    }

    public var name: String
    public var setup: Setup = .none
    public var method: String
    public var target: Target = .upload
    public var headers: [(String, String)] = []
    public var body: [UInt8] = []
    public var status: Int
    /// Fields that must be present with exactly this value ("*": any value; "$concat": the
    /// `Upload-Concat` the setup sent).
    public var expect: [(String, String)] = []
    /// Fields that must be absent.
    public var absent: [String] = []
    /// After the request, HEAD on the upload must report this offset.
    public var offsetAfter: Int? = nil

    public var description: String { name }
}
