import ArgumentParser
import FerryClientAHC
import Foundation

/// `ferry get URL FILE`: download a finished upload, streaming it to disk.
struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Download a finished upload to a file.")

    @Argument(help: "The upload URL.")
    var url: String

    @Argument(help: "Where to write it.")
    var file: String

    @OptionGroup var tls: TLSFlags

    func run() async throws {
        let client = try tls.makeClient()
        do {
            let written = try await AsyncHTTPClientTransport.download(from: url, to: file, client: client)
            FileHandle.standardError.write(Data("wrote \(written) bytes to \(file)\n".utf8))
        } catch {
            try? await client.shutdown()
            throw ValidationError("\(error)")
        }
        try await client.shutdown()
    }
}
