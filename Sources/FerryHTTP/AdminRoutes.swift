import Crypto
import FerryCore
import FerryProtocol
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The admin API, behind its own bearer token: `GET /admin/uploads/<id>/events` lists where
/// the delivery of each of the upload's events stands.
enum AdminRoutes {
    static func add(to router: Router<FerryRequestContext>, token: String, catalog: any OutboxCatalog) {
        router.get("/admin/uploads/:id/events") { request, context -> Response in
            guard authorized(request.headers[.authorization], token) else {
                return unauthorized()
            }
            guard let raw = context.parameters.get("id"), let id = UploadID(raw) else {
                return unknownUpload()
            }
            let deliveries = try await catalog.deliveries(of: id)
            if deliveries.isEmpty, try await catalog.get(id) == nil {
                return unknownUpload()
            }
            let body = deliveries.map(DeliveryView.init)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return Response(
                status: .ok,
                headers: [.contentType: "application/json", .cacheControl: "no-store"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(UploadEvents(upload: id.rawValue, events: body))))
            )
        }
    }

    /// A 401 with the admin realm's challenge.
    static func unauthorized() -> Response {
        failure(FerryError(.unauthorized, "the admin API needs its bearer token"))
    }

    static func unknownUpload() -> Response {
        failure(FerryError(.uploadNotFound, "no upload has this id"))
    }

    /// An error as the admin API's JSON.
    static func failure(_ error: any Error) -> Response {
        let answer = ErrorRendering.adminJSON(error as? FerryError ?? FerryError(.internalError, "\(error)"))
        return Response(status: answer.status, headers: answer.headers, body: ResponseBody(byteBuffer: ByteBuffer(string: answer.text)))
    }

    /// Compares in constant time (digests of equal length).
    static func authorized(_ header: String?, _ token: String) -> Bool {
        // The scheme is case-insensitive (RFC 9110 §11.1); the token is compared in constant time.
        let parts = header?.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true) ?? []
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return false }
        let given = SHA256.hash(data: Data(parts[1].trimmingCharacters(in: .whitespaces).utf8))
        let expected = SHA256.hash(data: Data(token.utf8))
        return zip(given, expected).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    static func json(_ status: HTTPResponse.Status, _ object: [String: String], extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [.contentType: "application/json", .cacheControl: "no-store"]
        headers.append(contentsOf: extra)
        let data = (try? JSONEncoder().encode(object)) ?? Data()
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    struct UploadEvents: Encodable {
        var upload: String
        var events: [DeliveryView]
    }

    struct DeliveryView: Encodable {
        var eventId: String
        var type: String
        var sequence: Int64
        var webhook: String
        var state: String
        var attempts: Int
        var createdAt: String
        var nextAttemptAt: String?
        var lastError: String?
        var deliveredAt: String?

        init(_ delivery: EventDelivery) {
            eventId = delivery.event.id
            type = delivery.event.type.rawValue
            sequence = delivery.event.sequence
            webhook = delivery.event.destination
            state = delivery.state.rawValue
            attempts = delivery.attempts
            createdAt = UploadDescription.timestamp(delivery.event.createdAt)
            nextAttemptAt = delivery.state == .pending ? UploadDescription.timestamp(delivery.nextAttemptAt) : nil
            lastError = delivery.lastError
            deliveredAt = delivery.deliveredAt.map(UploadDescription.timestamp)
        }
    }
}
