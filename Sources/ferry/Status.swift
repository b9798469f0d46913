import ArgumentParser
import AsyncHTTPClient
import FerryClient
import FerryClientAHC
import Foundation

/// `ferry status URL`: what the server knows about an upload.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print an upload's offset, length and state.")

    @Argument(help: "The upload URL.")
    var url: String

    func run() async throws {
        guard let target = URL(string: url), target.scheme != nil else { throw ValidationError("not a URL: \(url)") }
        let client = AsyncHTTPClientTransport.makeClient()
        let response: TransportResponse
        do {
            response = try await AsyncHTTPClientTransport(client: client)
                .send(TransportRequest(method: "HEAD", url: target, headers: [("Tus-Resumable", "1.0.0")])) { _ in }
            try? await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
        switch response.status {
        case 200...299:
            let offset = response.header("upload-offset").flatMap { Int64($0) }
            let length = response.header("upload-length").flatMap { Int64($0) }
            let state = offset != nil && offset == length ? "complete" : "incomplete"
            print("offset: \(offset.map(String.init) ?? "unknown")")
            print("length: \(length.map(String.init) ?? "deferred")")
            print("state: \(state)")
            if let expires = response.header("upload-expires") { print("expires: \(expires)") }
            if let metadata = response.header("upload-metadata") { print("metadata: \(metadata)") }
        case 404, 410:
            throw ValidationError("the server has no such upload (\(response.status))")
        default:
            throw ValidationError("the server answered \(response.status) \(response.header("ferry-error") ?? "")")
        }
    }
}
