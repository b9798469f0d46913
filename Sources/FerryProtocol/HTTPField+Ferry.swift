import FerryCore
import FerryInstant
import Foundation
import HTTPTypes

/// The fields both dialects (and the adapter) read or write. Dialect-only fields live with
/// their dialect.
extension HTTPField.Name {
    /// tus: a plain decimal; RUFH: a structured integer.
    public static let uploadOffset = Self("Upload-Offset")!
    /// tus: a plain decimal; RUFH (interop ≥ 6): a structured integer.
    public static let uploadLength = Self("Upload-Length")!
    /// RUFH's limits of an upload, also on tus's OPTIONS so either kind of client reads them.
    public static let uploadLimit = Self("Upload-Limit")!
    /// `done`, `pending` or `failed`: where the `pre-finish` business result of a complete upload stands.
    public static let ferryBusinessStatus = Self("Ferry-Business-Status")!
    /// The `pre-finish` callback's answer, compact JSON.
    public static let ferryBusinessResult = Self("Ferry-Business-Result")!
    /// The stable `ERR_*` code of an error response.
    public static let ferryError = Self("Ferry-Error")!
    /// The network a client says it is on (`wifi`, `5g`, `4g`, `3g`, `2g`, `wired`, `unknown`), for the statistics.
    public static let ferryNetwork = Self("Ferry-Network")!
    /// The kind of client, when it names itself (the web console sends `console`).
    public static let ferryClient = Self("Ferry-Client")!
    /// Where a client may report how an upload went (`POST /telemetry/<id>`), on OPTIONS.
    public static let ferryTelemetry = Self("Ferry-Telemetry")!
    /// `copy` on OPTIONS when concatenating partial uploads copies their bytes (object storage):
    /// a client that could send a file in one stream gains nothing by splitting it.
    public static let ferryConcatenation = Self("Ferry-Concatenation")!
    /// Instant upload (docs/instant-upload.md): `sha-256` on OPTIONS where a creation that
    /// announces its `Repr-Digest` may be answered with a challenge.
    public static let ferryInstantUpload = Self("Ferry-Instant-Upload")!
    /// The challenge on a creation whose announced content the platform holds.
    public static let ferryChallenge = Self("Ferry-Challenge")!
    /// The answer to a challenge, on a PATCH with no body.
    public static let ferryProof = Self("Ferry-Proof")!
    public static let xForwardedProto = Self("X-Forwarded-Proto")!
    public static let xForwardedHost = Self("X-Forwarded-Host")!
    public static let xForwardedFor = Self("X-Forwarded-For")!
    public static let xContentTypeOptions = Self("X-Content-Type-Options")!
}

extension HTTPField.Name {
    /// tus's version field: on every tus request but OPTIONS; a request that carries it speaks tus.
    public static let tusResumable = Self("Tus-Resumable")!
}

extension HTTPFields {
    /// The media type of `Content-Type`, lowercased, without parameters; nil without the field.
    public var mediaType: String? {
        self[.contentType].map { $0.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? "" }
    }

    /// Who is creating an upload, for the statistics: the client kind (`Ferry-Client`, else
    /// `User-Agent`) and the network (`Ferry-Network`, else the `network` metadata).
    public func requestInfo(dialect: String, metadata: UploadMetadata) -> RequestInfo {
        RequestInfo(
            dialect: dialect,
            client: RequestInfo.client(declared: self[.ferryClient], userAgent: self[.userAgent]),
            network: RequestInfo.network(self[.ferryNetwork] ?? metadata.string("network"))
        )
    }
}

extension HTTPFields {
    /// `Ferry-Instant-Upload: sha-256` on an OPTIONS answer when a creation in `scenario` (nil:
    /// the default) may be challenged.
    public mutating func advertiseInstantUpload(scenario: String?, scenarios: ScenarioSet, capabilities: EngineCapabilities) {
        guard capabilities.instantUpload, let chosen = (scenario ?? scenarios.defaultName).flatMap({ try? scenarios.named($0) }),
            chosen.instantUpload.scope != .off
        else { return }
        self[.ferryInstantUpload] = "sha-256"
    }

    /// The answer of a `Ferry-Proof` request, which must carry no body (`hasBody`); nil without the field.
    public func instantProof(hasBody: Bool) throws(FerryError) -> [UInt8]? {
        guard let field = self[.ferryProof] else { return nil }
        guard !hasBody else { throw FerryError(.proofWithBody, "a request with Ferry-Proof carries no body") }
        guard let proof = InstantProof.parse(fieldValue: field) else {
            throw FerryError(.proofInvalid, "Ferry-Proof is one byte sequence of 32 bytes (:base64:)")
        }
        return proof
    }
}
