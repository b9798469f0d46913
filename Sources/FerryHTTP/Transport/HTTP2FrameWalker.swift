import NIOCore

/// Follows the frame boundaries of one direction of an HTTP/2 byte stream, however the bytes are
/// cut into reads or writes, and reports each frame's type with the first bytes of its payload
/// (as many as the caller asks for that type). Reads nothing it is not asked for; keeps no payload.
struct HTTP2FrameWalker {
    static let frameHeaderLength = 9

    /// Bytes still to pass before the next frame header (the client preface, a frame's payload).
    private var skip: Int
    /// A frame header split across buffers.
    private var header: [UInt8] = []
    /// A frame whose payload prefix is being collected.
    private var collecting: (type: UInt8, length: Int, wanted: Int, bytes: [UInt8])?
    /// The last bytes walked were a whole frame header, and its payload (not empty) has not begun.
    private var atPayloadStart = false

    init(skip: Int = 0) {
        self.skip = skip
    }

    /// How many of the last bytes walked begin a frame without reaching its payload: a partial
    /// header (1-8), or a whole header whose non-empty payload has not begun (9); otherwise 0.
    var unstartedFrameBytes: Int {
        if !header.isEmpty { return header.count }
        if collecting?.bytes.isEmpty == true || atPayloadStart { return Self.frameHeaderLength }
        return 0
    }

    /// Walks `bytes`; `prefix` says how many payload bytes of a frame of that type `frame` wants.
    /// Stops and returns false as soon as `frame` does.
    mutating func walk(
        _ bytes: ByteBufferView,
        prefix: (UInt8) -> Int,
        frame: (_ type: UInt8, _ payloadPrefix: [UInt8]) -> Bool
    ) -> Bool {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            atPayloadStart = false
            if var current = collecting {
                let step = min(current.wanted - current.bytes.count, bytes.endIndex - index)
                current.bytes.append(contentsOf: bytes[index..<(index + step)])
                index += step
                guard current.bytes.count == current.wanted else {
                    collecting = current
                    continue
                }
                collecting = nil
                skip = current.length - current.wanted
                if !frame(current.type, current.bytes) { return false }
                continue
            }
            if skip > 0 {
                let step = min(skip, bytes.endIndex - index)
                skip -= step
                index += step
                continue
            }
            header.append(bytes[index])
            index += 1
            guard header.count == Self.frameHeaderLength else { continue }
            let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
            let type = header[3]
            header.removeAll(keepingCapacity: true)
            let wanted = min(max(0, prefix(type)), length)
            if wanted > 0 {
                collecting = (type, length, wanted, [])
            } else {
                skip = length
                atPayloadStart = length > 0
                if !frame(type, []) { return false }
            }
        }
        return true
    }

    /// Passes `count` bytes of payload that are not in a buffer (a file region in a DATA frame).
    mutating func passPayload(_ count: Int) {
        skip -= min(skip, count)
    }
}
