import ArgumentParser
import FerryClient
import FerryClientAHC
import Foundation

/// `ferry status URL`: what the server knows about an upload.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print an upload's offset, length and state.")

    @Argument(help: "The upload URL.")
    var url: String

    @OptionGroup var tls: TLSFlags

    func run() async throws {
        guard let target = URL(string: url), target.scheme != nil else { throw ValidationError("not a URL: \(url)") }
        let client = try tls.makeClient()
        let response: TransportResponse
        do {
            response = try await AsyncHTTPClientTransport(client: client)
                .send(.status(of: target)) { _ in }
            try? await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
        let fields = response.fields
        switch response.status.code {
        case 200...299:
            let offset = fields.uploadOffset
            let length = fields.uploadLength
            let state = offset != nil && offset == length ? "complete" : "incomplete"
            print("offset: \(offset.map(String.init) ?? "unknown")")
            print("length: \(length.map(String.init) ?? "deferred")")
            print("state: \(state)")
            if let expires = fields.uploadExpires { print("expires: \(expires)") }
            if let metadata = fields.uploadMetadata { print("metadata: \(metadata)") }
        case 404, 410:
            throw ValidationError("the server has no such upload (\(response.status.code))")
        default:
            throw ValidationError("the server answered \(response.status.code) \(fields.ferryError ?? "")")
        }
    }
}
