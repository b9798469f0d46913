import AsyncHTTPClient
import FerryClient
import Foundation
import NIOCore
import _NIOFileSystem

extension AsyncHTTPClientTransport {
    /// A download the server refused: its status and `Ferry-Error` code.
    public struct DownloadRefused: Error, CustomStringConvertible {
        public var status: Int
        public var code: String?
        public var description: String { "the server answered \(status) \(code ?? "")" }
    }

    /// Streams the bytes of a finished upload to `path` (replacing it), with bounded memory;
    /// returns how many were written.
    public static func download(from url: String, to path: String, client: HTTPClient) async throws -> Int64 {
        let response = try await client.execute(HTTPClientRequest(url: url), timeout: .hours(24))
        guard response.status == .ok else {
            throw DownloadRefused(status: Int(response.status.code), code: response.headers.first(name: "Ferry-Error"))
        }
        return try await FileSystem.shared.withFileHandle(forWritingAt: FilePath(path), options: .newFile(replaceExisting: true)) { handle in
            var writer = handle.bufferedWriter()
            var total: Int64 = 0
            for try await buffer in response.body {
                total += Int64(try await writer.write(contentsOf: buffer))
            }
            try await writer.flush()
            return total
        }
    }
}
