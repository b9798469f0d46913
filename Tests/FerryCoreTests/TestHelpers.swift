import FerryCore
import Foundation
import Logging
import NIOCore
import NIOPosix

/// A fresh temporary folder, removed by the caller with `remove()`.
struct TemporaryDirectory {
    let path: String

    init() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-test-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A body that yields the given pieces, then ends (`complete`) or breaks off.
func body(_ pieces: [[UInt8]]) -> AsyncStream<ByteBuffer> {
    AsyncStream { continuation in
        for piece in pieces { continuation.yield(ByteBuffer(bytes: piece)) }
        continuation.finish()
    }
}

/// A transport that reports how the body ended and records `willReadBody`.
struct FakeTransport: BodyTransport {
    var end: BodyEnd = BodyEnd(complete: true)

    func willReadBody() async {}
    func bodyEnded() async -> BodyEnd { end }
}

extension Logger {
    static let test = Logger(label: "ferry-test")
}

func bytes(_ count: Int, seed: Int = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed) }
}
