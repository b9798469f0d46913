import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// How business callbacks and webhooks POST: `http://` URLs over `KeptAliveHTTP1` when one is
/// given, everything else (`https://`, or no `keptAlive`) through AsyncHTTPClient.
public struct CallbackHTTP: Sendable {
    public let client: HTTPClient
    public let keptAlive: KeptAliveHTTP1?

    public init(client: HTTPClient, keptAlive: KeptAliveHTTP1? = nil) {
        self.client = client
        self.keptAlive = keptAlive
    }

    /// POSTs `body` with `headers`; returns the status and at most `maxAnswer` bytes of the
    /// answer (a longer one fails). With `maxAnswer` nil only the status matters: the answer is
    /// dropped, and failing to read it is not an error.
    func post(_ url: String, headers: HTTPHeaders, body: ByteBuffer, timeout: Duration, maxAnswer: Int?) async throws -> (status: Int, answer: ByteBuffer) {
        if let keptAlive, let target = keptAlive.target(url) {
            return try await keptAlive.post(target, headers: headers, body: body, timeout: TimeAmount(timeout), maxAnswer: maxAnswer)
        }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers = headers
        request.body = .bytes(body)
        let response = try await client.execute(request, timeout: TimeAmount(timeout))
        guard let maxAnswer else {
            _ = try? await response.body.collect(upTo: 64 * 1024)
            return (Int(response.status.code), ByteBuffer())
        }
        return (Int(response.status.code), try await response.body.collect(upTo: maxAnswer))
    }
}
