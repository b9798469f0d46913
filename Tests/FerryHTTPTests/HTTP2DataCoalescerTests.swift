import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import FerryHTTP

@Suite("HTTP/2 DATA frames joined into parts")
struct HTTP2DataCoalescerTests {
    static func data(_ bytes: [UInt8], end: Bool = false) -> HTTP2Frame.FramePayload {
        .data(.init(data: .byteBuffer(ByteBuffer(bytes: bytes)), endStream: end))
    }

    /// What came out: each DATA part's bytes and whether it ended the stream; other frames as nil.
    static func drain(_ channel: EmbeddedChannel) throws -> [([UInt8], Bool)?] {
        var out: [([UInt8], Bool)?] = []
        while let payload = try channel.readInbound(as: HTTP2Frame.FramePayload.self) {
            if case .data(let data) = payload, case .byteBuffer(let buffer) = data.data {
                out.append((Array(buffer.readableBytesView), data.endStream))
            } else {
                out.append(nil)
            }
        }
        return out
    }

    @Test func framesAreJoinedAcrossReadsAndGoOnOnceTheHoldHasPassed() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(handler: HTTP2DataCoalescer(), loop: loop)
        channel.pipeline.fireChannelRead(Self.data([1, 2]))
        channel.pipeline.fireChannelReadComplete()
        channel.pipeline.fireChannelRead(Self.data([3]))
        channel.pipeline.fireChannelReadComplete()
        #expect(try Self.drain(channel).isEmpty, "held while more may come")
        loop.advanceTime(by: HTTP2DataCoalescer.hold)
        #expect(try Self.drain(channel).map { $0?.0 } == [[1, 2, 3]])
        channel.pipeline.fireChannelRead(Self.data([4]))
        channel.pipeline.fireChannelReadComplete()
        loop.advanceTime(by: HTTP2DataCoalescer.hold)
        #expect(try Self.drain(channel).map { $0?.0 } == [[4]], "a new hold for the next bytes")
    }

    @Test func framesAreCopiedNotKept() throws {
        let channel = EmbeddedChannel(handler: HTTP2DataCoalescer())
        let frame = ByteBuffer(bytes: [1, 2, 3])
        channel.pipeline.fireChannelRead(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(frame))))
        channel.pipeline.fireChannelRead(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))
        let part = try channel.readInbound(as: HTTP2Frame.FramePayload.self)
        guard case .data(let data) = part, case .byteBuffer(let buffer) = data.data else {
            Issue.record("no DATA part")
            return
        }
        #expect(Array(buffer.readableBytesView) == [1, 2, 3])
        let shared = buffer.withUnsafeReadableBytes { part in frame.withUnsafeReadableBytes { $0.baseAddress == part.baseAddress } }
        #expect(!shared, "the decoder's storage is not kept")
    }

    @Test func theEndOfTheStreamAndOtherFramesKeepTheirOrder() throws {
        let channel = EmbeddedChannel(handler: HTTP2DataCoalescer())
        channel.pipeline.fireChannelRead(Self.data([1]))
        channel.pipeline.fireChannelRead(Self.data([2], end: true))
        channel.pipeline.fireChannelRead(HTTP2Frame.FramePayload.rstStream(.cancel))
        let parts = try Self.drain(channel)
        #expect(parts.count == 3)
        #expect(parts[0]?.0 == [1] && parts[0]?.1 == false)
        #expect(parts[1]?.0 == [2] && parts[1]?.1 == true)
        #expect(parts[2] == nil)
    }

    @Test func aStreamThatFailsOrClosesHandsOnWhatItReceived() throws {
        let channel = EmbeddedChannel(handler: HTTP2DataCoalescer())
        channel.pipeline.fireChannelRead(Self.data([7, 8]))
        channel.pipeline.fireErrorCaught(NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .cancel))
        #expect(try Self.drain(channel).map { $0?.0 } == [[7, 8]])
        #expect(throws: (any Error).self) { try channel.throwIfErrorCaught() }
        channel.pipeline.fireChannelRead(Self.data([9]))
        _ = try? channel.finish()
        #expect(try Self.drain(channel).map { $0?.0 } == [[9]])
    }

    @Test func aLargeBodyGoesOnInPartsOfTheLimit() throws {
        let channel = EmbeddedChannel(handler: HTTP2DataCoalescer())
        let frame = [UInt8](repeating: 1, count: 16 * 1024)
        let frames = HTTP2DataCoalescer.limit / frame.count + 1
        for _ in 0..<frames { channel.pipeline.fireChannelRead(Self.data(frame)) }
        #expect(try Self.drain(channel).map { $0?.0.count } == [HTTP2DataCoalescer.limit], "at the limit, within the read")
        channel.pipeline.fireChannelRead(Self.data([], end: true))
        #expect(try Self.drain(channel).map { $0?.0.count } == [16 * 1024, 0])
    }
}
