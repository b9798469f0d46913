import Crypto
import Foundation
import NIOCore

/// Checksum algorithms for the tus `checksum` extension (lowercase names, as advertised).
public enum ChecksumAlgorithm: String, Sendable, CaseIterable {
    case sha1
    case md5
    case sha256
    case sha512

    /// The advertised list, preferred first.
    public static let advertised = "sha1,md5,sha256,sha512"
}

/// An expected digest, as a client declared it.
public struct ChecksumExpectation: Sendable, Equatable {
    public var algorithm: ChecksumAlgorithm
    public var digest: [UInt8]

    public init(algorithm: ChecksumAlgorithm, digest: [UInt8]) {
        self.algorithm = algorithm
        self.digest = digest
    }

    /// Parses `<algorithm> <base64 digest>`.
    public init(header: String) throws(FerryError) {
        let parts = header.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2 else {
            throw FerryError(.invalidChecksum, "Upload-Checksum is an algorithm, a space and a Base64 digest")
        }
        guard let algorithm = ChecksumAlgorithm(rawValue: parts[0].lowercased()) else {
            throw FerryError(.unsupportedChecksumAlgorithm, "supported checksum algorithms are \(ChecksumAlgorithm.advertised)")
        }
        guard let digest = Data(base64Encoded: String(parts[1])) else {
            throw FerryError(.invalidChecksum, "the Upload-Checksum digest is not standard Base64")
        }
        self.init(algorithm: algorithm, digest: Array(digest))
    }
}

/// Incremental hashing of a request body, for one or several algorithms at once.
public struct BodyHasher: Sendable {
    private var sha1: Insecure.SHA1?
    private var md5: Insecure.MD5?
    private var sha256: SHA256?
    private var sha512: SHA512?

    public init(algorithms: some Sequence<ChecksumAlgorithm>) {
        for algorithm in algorithms {
            switch algorithm {
            case .sha1: sha1 = Insecure.SHA1()
            case .md5: md5 = Insecure.MD5()
            case .sha256: sha256 = SHA256()
            case .sha512: sha512 = SHA512()
            }
        }
    }

    public mutating func update(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            sha1?.update(bufferPointer: bytes)
            md5?.update(bufferPointer: bytes)
            sha256?.update(bufferPointer: bytes)
            sha512?.update(bufferPointer: bytes)
        }
    }

    /// True when `expectation` matches what was hashed; false when it differs or was not hashed.
    public func matches(_ expectation: ChecksumExpectation) -> Bool {
        let digest: [UInt8]?
        switch expectation.algorithm {
        case .sha1: digest = sha1.map { Array($0.finalize()) }
        case .md5: digest = md5.map { Array($0.finalize()) }
        case .sha256: digest = sha256.map { Array($0.finalize()) }
        case .sha512: digest = sha512.map { Array($0.finalize()) }
        }
        return digest == expectation.digest
    }
}
