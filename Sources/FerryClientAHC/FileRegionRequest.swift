import AsyncHTTPClient
import FerryClient
import Foundation
import HTTPTypes
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A file-range request body sent with `sendfile(2)`: the bytes go from the page cache to the
/// socket without passing through the process. On a fast link this halves the client's CPU,
/// which on a small machine is shared with everything else.
///
/// Only for plain `http`: a TLS channel cannot carry file regions, so `https` bodies stream as
/// buffers instead (`AsyncHTTPClientTransport`).
///
/// The range goes out in pieces of `pieceLength` bytes, each written after the previous one
/// left for the socket, so progress is reported as the socket takes the bytes (the stall
/// watchdog needs that) and at most one piece is queued in the channel.
struct FileRegionRequest {
    let client: HTTPClient
    let pieceLength: Int

    func send(
        _ request: TransportRequest, path: String, range: Range<Int64>, progress: @escaping @Sendable (Int64) -> Void
    ) async throws -> TransportResponse {
        let handle = try await NIOThreadPool.singleton.runIfActive {
            try NIOFileHandle(_deprecatedPath: path)
        }
        defer { Self.close(handle) }
        let pieceLength = pieceLength
        let body = HTTPClient.Body.stream(contentLength: Int64(range.count)) { writer in
            Self.write(handle: handle, from: range.lowerBound, to: range.upperBound, start: range.lowerBound,
                       pieceLength: pieceLength, writer: writer, progress: progress)
        }
        let http = try HTTPClient.Request(
            url: request.url, method: HTTPMethod(rawValue: request.method.rawValue), headers: HTTPHeaders(fields: request.headerFields), body: body)
        let delegate = BoundedResponseDelegate(limit: 65_536)
        let task = client.execute(request: http, delegate: delegate, eventLoop: .indifferent, deadline: nil, logger: nil)
        return try await withTaskCancellationHandler {
            try await task.futureResult.get()
        } onCancel: {
            task.cancel()
        }
    }

    /// Closes the file once no write uses it. A request that ends early (cancelled, answered
    /// before its body was sent) can leave the event loop inside `sendfile` on the descriptor,
    /// and `NIOFileHandle.close()` then refuses with `EBUSY`: the close is retried until that
    /// write has left, so the descriptor is neither leaked nor closed under the write (a write
    /// chained after the close fails with `EBADF` and ends the chain).
    private static func close(_ handle: NIOFileHandle) {
        do {
            try handle.close()
        } catch let error as IOError where error.errnoCode == EBUSY {
            Task.detached {
                for _ in 0..<10_000 {
                    try? await Task.sleep(for: .milliseconds(1))
                    do {
                        try handle.close()
                        return
                    } catch let error as IOError where error.errnoCode == EBUSY {
                        continue
                    } catch {
                        return
                    }
                }
            }
        } catch {
            // Already closed: nothing to release.
        }
    }

    /// Writes `[from, to)` piece by piece, chaining each write on the previous one's completion.
    private static func write(
        handle: NIOFileHandle, from: Int64, to: Int64, start: Int64, pieceLength: Int,
        writer: HTTPClient.Body.StreamWriter, progress: @escaping @Sendable (Int64) -> Void
    ) -> EventLoopFuture<Void> {
        let end = min(to, from + Int64(pieceLength))
        let region = FileRegion(fileHandle: handle, readerIndex: Int(from), endIndex: Int(end))
        let written = writer.write(.fileRegion(region))
        return written.flatMap {
            progress(end - start)
            guard end < to else { return written }
            // A new event-loop task, not a nested call: a write that completes at once would
            // otherwise run the next one on the same stack, piece after piece.
            return written.eventLoop.flatSubmit {
                write(handle: handle, from: end, to: to, start: start, pieceLength: pieceLength,
                      writer: writer, progress: progress)
            }
        }
    }
}

/// Collects the response head and at most `limit` bytes of its body (the rest is read and
/// dropped: an upload answer is small, and a large one must not grow memory).
final class BoundedResponseDelegate: HTTPClientResponseDelegate, Sendable {
    typealias Response = TransportResponse

    private struct State {
        var head: HTTPResponseHead?
        var body: [UInt8] = []
    }

    private let limit: Int
    private let state = NIOLockedValueBox(State())

    init(limit: Int) {
        self.limit = limit
    }

    func didReceiveHead(task: HTTPClient.Task<TransportResponse>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        state.withLockedValue { $0.head = head }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<TransportResponse>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        state.withLockedValue { state in
            let room = limit - state.body.count
            if room > 0 { state.body += buffer.readableBytesView.prefix(room) }
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<TransportResponse>) throws -> TransportResponse {
        try state.withLockedValue { state in
            guard let head = state.head else { throw HTTPClientError.remoteConnectionClosed }
            return TransportResponse(
                status: try TransportResponse.status(code: Int(head.status.code), reasonPhrase: head.status.reasonPhrase),
                headerFields: HTTPFields(nioHeaders: head.headers),
                body: state.body,
                httpVersion: HTTPProtocolVersion(head.version)
            )
        }
    }
}
