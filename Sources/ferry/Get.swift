import ArgumentParser
import AsyncHTTPClient
import FerryClientAHC
import Foundation
import NIOCore
import _NIOFileSystem

/// `ferry get URL FILE`: download a finished upload, streaming it to disk.
struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Download a finished upload to a file.")

    @Argument(help: "The upload URL.")
    var url: String

    @Argument(help: "Where to write it.")
    var file: String

    func run() async throws {
        let client = AsyncHTTPClientTransport.makeClient()
        do {
            let response = try await client.execute(HTTPClientRequest(url: url), timeout: .hours(24))
            guard response.status == .ok else {
                throw ValidationError("the server answered \(response.status.code) \(response.headers.first(name: "Ferry-Error") ?? "")")
            }
            let written = try await FileSystem.shared.withFileHandle(
                forWritingAt: FilePath(file),
                options: .newFile(replaceExisting: true)
            ) { handle in
                var writer = handle.bufferedWriter()
                var total: Int64 = 0
                for try await buffer in response.body {
                    total += Int64(try await writer.write(contentsOf: buffer))
                }
                try await writer.flush()
                return total
            }
            FileHandle.standardError.write(Data("wrote \(written) bytes to \(file)\n".utf8))
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }
}
