import Foundation

/// What a creation is admitted as, by every rule that needs nothing but values: the scenario
/// it lands in, the most it may hold, and the quota claim the catalog checks atomically. The
/// engine adds what needs I/O or state (the creation rate, the owner's usage, `pre-create`).
public struct CreationAdmission: Sendable, Equatable {
    public var scenario: Scenario
    /// The largest upload this creator may store in this scenario.
    public var maxSize: Int64?
    /// The quota the creation counts against; nil when none applies.
    public var claim: QuotaClaim?

    /// The rules of a creation, in the order a client would fix them: metadata size, the
    /// scenario, whether the creator may use it, the length, the metadata it requires and the
    /// content types it takes.
    public static func decide(
        _ spec: UploadEngine.CreateSpec,
        business: BusinessRules,
        configuration: EngineConfiguration,
        at now: Date
    ) throws(FerryError) -> CreationAdmission {
        try spec.metadata.checkSize(total: configuration.maxMetadataBytes, perEntry: configuration.maxMetadataEntryBytes)
        let scenario = try business.scenarios.resolve(path: spec.scenario, metadata: spec.metadata)
        let principal = spec.principal
        if principal.isAnonymous, !scenario.allowsAnonymous {
            throw FerryError(.unauthorized, "the scenario \(scenario.name) needs a bearer token")
        }
        guard principal.mayUse(scenario.name) else {
            throw FerryError(.forbidden, "the token does not grant the scenario \(scenario.name)")
        }
        let quotas = business.quotas(of: principal)
        let maxSize = [configuration.maxSize, scenario.maxSize, quotas.maxSize].compactMap { $0 }.min()
        if let length = spec.length, let maxSize, length > maxSize {
            throw FerryError(.maxSizeExceeded, "the upload is larger than the scenario \(scenario.name) accepts (\(maxSize) bytes)")
        }
        for key in scenario.requiredMetadata where !spec.metadata.contains(key) {
            throw FerryError(.metadataRequired, "the scenario \(scenario.name) requires the metadata key \(key)")
        }
        if let type = spec.metadata.string("filetype"), !scenario.allows(contentType: type) {
            throw FerryError(.contentTypeNotAllowed, "the scenario \(scenario.name) does not accept \(type)")
        }
        var claim: QuotaClaim?
        if let key = QuotaKey.of(principal, address: spec.address) {
            let candidate = QuotaClaim(owner: key, quotas: quotas, bytes: spec.length ?? 0, creating: true, windowStart: now.addingTimeInterval(-60))
            if candidate.isLimited { claim = candidate }
        }
        return CreationAdmission(scenario: scenario, maxSize: maxSize, claim: claim)
    }
}

extension QuotaKey {
    /// Whom a new upload of `principal`, created from `address`, counts against.
    public static func of(_ principal: Principal, address: String?) -> String? {
        principal.subject.map(subject) ?? address.map(self.address)
    }
}

extension BusinessRules {
    /// The quotas of `principal`: a token's (the configured ones, lowered by its claims), or
    /// those of each anonymous client address.
    public func quotas(of principal: Principal) -> Quotas {
        principal.isAnonymous ? anonymousQuotas : quotas.lowered(by: principal.limits)
    }
}
