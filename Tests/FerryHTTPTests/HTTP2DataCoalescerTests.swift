import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import FerryHTTP

@Suite("HTTP/2 DATA frames joined per read")
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

    @Test func framesOfOneReadBecomeOnePartAtTheEndOfTheRead() throws {
        let channel = EmbeddedChannel(handler: HTTP2DataCoalescer())
        try channel.writeInbound(Self.data([1, 2]))  // writeInbound also fires readComplete
        channel.pipeline.fireChannelRead(Self.data([3]))
        channel.pipeline.fireChannelRead(Self.data([4, 5]))
        #expect(try Self.drain(channel).map { $0?.0 } == [[1, 2]], "nothing before the read completes")
        channel.pipeline.fireChannelReadComplete()
        #expect(try Self.drain(channel).map { $0?.0 } == [[3, 4, 5]])
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

    @Test func aLargeReadIsCutAtTheLimit() throws {
        let channel = EmbeddedChannel(handler: HTTP2DataCoalescer())
        let frame = [UInt8](repeating: 1, count: 16 * 1024)
        for _ in 0..<5 { channel.pipeline.fireChannelRead(Self.data(frame)) }
        channel.pipeline.fireChannelReadComplete()
        #expect(try Self.drain(channel).map { $0?.0.count } == [HTTP2DataCoalescer.limit, 16 * 1024])
    }
}
