import FerryCore
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import FerryHTTP

/// One HTTP/2 frame's bytes: 9-byte header, then the payload.
private func frame(_ type: UInt8, stream: UInt32 = 0, _ payload: [UInt8] = []) -> [UInt8] {
    let n = payload.count
    return [UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), type, 0]
        + withUnsafeBytes(of: stream.bigEndian, Array.init) + payload
}

private func goAway(lastStream: UInt32, code: UInt32, debug: [UInt8] = []) -> [UInt8] {
    frame(0x7, withUnsafeBytes(of: lastStream.bigEndian, Array.init) + withUnsafeBytes(of: code.bigEndian, Array.init) + debug)
}

private func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

@Suite("HTTP/2 frame walker")
struct HTTP2FrameWalkerTests {
    /// SETTINGS, a DATA frame whose payload looks like frame headers, a GOAWAY with debug data, a WINDOW_UPDATE.
    static let stream: [UInt8] =
        frame(0x4, [0, 3, 0, 0, 0, 100])
        + frame(0x0, stream: 1, Array(repeating: 0x7, count: 100))
        + goAway(lastStream: 7, code: 0xB, debug: [1, 2, 3])
        + frame(0x8, [0, 0, 0, 1])

    @Test(arguments: [1, 2, 7, 9, 10, 17, 1000])
    func framesAreFoundHoweverTheBytesAreCut(chunk: Int) {
        var walker = HTTP2FrameWalker()
        var seen: [(UInt8, [UInt8])] = []
        var start = 0
        while start < Self.stream.count {
            let piece = buffer(Array(Self.stream[start..<min(start + chunk, Self.stream.count)]))
            _ = walker.walk(piece.readableBytesView, prefix: { $0 == 0x7 ? 8 : 0 }) { type, prefix in
                seen.append((type, prefix))
                return true
            }
            start += chunk
        }
        #expect(seen.map(\.0) == [0x4, 0x0, 0x7, 0x8])
        #expect(seen[2].1 == [0, 0, 0, 7, 0, 0, 0, 0xB])
        #expect(seen.filter { $0.0 != 0x7 }.allSatisfy { $0.1.isEmpty })
    }

    @Test func aReadThatEndsBeforeAFramesPayloadSaysHowManyBytesBeganIt() {
        let data = frame(0x0, stream: 1, [1, 2, 3])
        let empty = frame(0x4)
        // Where a read ends -> how many of its last bytes begin a frame whose payload has not begun.
        let cases: [([UInt8], Int)] = [
            (Array(data[0..<4]), 4),  // inside the header
            (Array(data[0..<9]), 9),  // the whole header, no payload yet
            (Array(data[0..<10]), 0),  // payload begun
            (data, 0),  // frame complete
            (empty, 0),  // an empty frame is complete with its header
            (data + Array(data[0..<9]), 9),
        ]
        for (bytes, expected) in cases {
            var walker = HTTP2FrameWalker()
            _ = walker.walk(buffer(bytes).readableBytesView, prefix: { _ in 0 }) { _, _ in true }
            #expect(walker.unstartedFrameBytes == expected, "\(bytes.count) bytes")
        }
        var collecting = HTTP2FrameWalker()
        _ = collecting.walk(buffer(Array(goAway(lastStream: 1, code: 0)[0..<9])).readableBytesView, prefix: { _ in 8 }) { _, _ in true }
        #expect(collecting.unstartedFrameBytes == 9)
    }

    @Test func theClientPrefaceIsSkipped() {
        var walker = HTTP2FrameWalker(skip: HTTP2ConnectionGuard.prefaceLength)
        var types: [UInt8] = []
        let bytes = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + frame(0x4) + frame(0x8, [0, 0, 0, 1])
        _ = walker.walk(buffer(bytes).readableBytesView, prefix: { _ in 0 }) { type, _ in
            types.append(type)
            return true
        }
        #expect(types == [0x4, 0x8])
    }
}

@Suite("HTTP/2 connection guard")
struct HTTP2ConnectionGuardTests {
    private func connected(maxPerSecond: Int = 10_000) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: HTTP2ConnectionGuard(maxPerSecond: maxPerSecond, logger: Logger(label: "test")))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8443)).wait()
        return channel
    }

    @Test(arguments: [0x1, 0x2, 0xB] as [UInt32])
    func aGoAwayWithAnErrorIsWrittenThenTheConnectionCloses(code: UInt32) throws {
        let channel = try connected()
        try channel.writeOutbound(IOData.byteBuffer(buffer(frame(0x4) + goAway(lastStream: 0, code: code))))
        #expect(try channel.readOutbound(as: IOData.self) != nil)
        #expect(!channel.isActive)
    }

    @Test func aGracefulGoAwayKeepsTheConnection() throws {
        let channel = try connected()
        try channel.writeOutbound(IOData.byteBuffer(buffer(goAway(lastStream: 0x7FFF_FFFF, code: 0))))
        #expect(channel.isActive)
        _ = try channel.finish()
    }

    @Test func aGoAwaySplitAcrossWritesIsSeen() throws {
        let channel = try connected()
        let bytes = goAway(lastStream: 1, code: 0x1)
        try channel.writeOutbound(IOData.byteBuffer(buffer(Array(bytes[0..<11]))))
        #expect(channel.isActive)
        try channel.writeOutbound(IOData.byteBuffer(buffer(Array(bytes[11...]))))
        #expect(!channel.isActive)
    }

    @Test func dataThatLooksLikeAGoAwayIsOnlyData() throws {
        let channel = try connected()
        let lookalike = goAway(lastStream: 0, code: 0xB)
        try channel.writeOutbound(IOData.byteBuffer(buffer(frame(0x0, stream: 1, lookalike))))
        #expect(channel.isActive)
        _ = try channel.finish()
    }

    /// NIOHTTP2's decoder copies its whole buffer on every read that follows one ending at a
    /// frame's start: such an end is held back and sent on with the next read.
    @Test(arguments: [1, 5, 9, 100, 16_393, 40_000])
    func noReadHandedOnEndsBeforeAFramesPayload(chunk: Int) throws {
        let channel = try connected()
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        var bytes = preface + frame(0x4)
        for index in 0..<6 {
            bytes += frame(0x0, stream: 1, [UInt8](repeating: UInt8(index), count: 16_384))
        }
        bytes += frame(0x8, [0, 0, 0, 1]) + frame(0x0, stream: 1)
        var received: [UInt8] = []
        var start = 0
        while start < bytes.count {
            try channel.writeInbound(buffer(Array(bytes[start..<min(start + chunk, bytes.count)])))
            start += chunk
            while let read = try channel.readInbound(as: ByteBuffer.self) {
                received += read.readableBytesView
                var walker = HTTP2FrameWalker(skip: HTTP2ConnectionGuard.prefaceLength)
                _ = walker.walk(buffer(received).readableBytesView, prefix: { _ in 0 }) { _, _ in true }
                #expect(walker.unstartedFrameBytes == 0, "a read handed on ends at a frame's start")
            }
        }
        #expect(received == bytes, "every byte, in order")
        _ = try channel.finish()
    }

    @Test func aWindowUpdateFloodClosesTheConnection() throws {
        let channel = try connected(maxPerSecond: 1)  // 10 in a 10 s window
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        let update = frame(0x8, [0, 0, 0, 1])
        try channel.writeInbound(buffer(preface + Array([[UInt8]](repeating: update, count: 10).joined())))
        #expect(try channel.readInbound(as: ByteBuffer.self) != nil)
        #expect(channel.isActive)
        try channel.writeInbound(buffer(update))
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        #expect(!channel.isActive)
    }
}

@Suite("HTTP/2 limits")
struct HTTP2LimitsTests {
    /// Which setting a value out of range is refused for; nil when the limits are valid.
    private func refused(_ change: (inout HTTP2Limits) -> Void) -> String? {
        var limits = HTTP2Limits()
        change(&limits)
        do {
            try limits.validate()
            return nil
        } catch {
            return error.setting
        }
    }

    @Test func theDefaultsAndTheProtocolsBoundsAreAccepted() {
        #expect(refused { _ in } == nil)
        #expect(refused { $0.maxFrameSize = 16_384 } == nil)
        #expect(refused { $0.maxFrameSize = 16_777_215 } == nil)
        #expect(HTTP2Limits().maxFrameSize == 65_536)
    }

    @Test func valuesOutsideThemNameTheirFlag() {
        #expect(refused { $0.maxFrameSize = 16_383 } == "h2-max-frame")
        #expect(refused { $0.maxFrameSize = 16_777_216 } == "h2-max-frame")
        #expect(refused { $0.streamWindow = 1000 } == "h2-stream-window")
        #expect(refused { $0.connectionWindow = $0.streamWindow - 1 } == "h2-connection-window")
        #expect(refused { $0.maxConcurrentStreams = 0 } == "h2-max-streams")
    }
}
