import Foundation

/// Which events a change to an upload produces: a pure function of the old record, the new
/// one, its scenario's webhooks and the time. The engine writes what it returns with the change,
/// in one transaction.
public enum UploadEvents {
    /// The outbox events a change from `old` (nil: a creation) to `new` produces at `date`,
    /// numbering them in `new.eventSequence` (and noting a progress event in `new.progressEventAt`).
    public static func derive(from old: UploadRecord?, to new: inout UploadRecord, scenario: Scenario?, at date: Date) -> [OutboxEvent] {
        // Partials are pieces of a file: their final's events describe it.
        guard new.concat != .partial, let scenario, !scenario.webhooks.isEmpty else {
            return []
        }
        var types: [UploadEventType] = []
        if old == nil { types.append(.created) }
        if let old, old.state == new.state, new.state == .incomplete, new.offset > old.offset,
            !scenario.webhooks(for: .progress).isEmpty,
            new.progressEventAt.map({ date.timeIntervalSince($0) >= scenario.progressInterval.inSeconds }) ?? true
        {
            types.append(.progress)
            new.progressEventAt = date
        }
        if old?.state != new.state {
            switch new.state {
            case .complete: types.append(.completed)
            case .terminated: types.append(.terminated)
            case .expired: types.append(.expired)
            case .incomplete, .lost: break
            }
        }
        var events: [OutboxEvent] = []
        for type in types {
            let webhooks = scenario.webhooks(for: type)
            guard !webhooks.isEmpty else { continue }
            new.eventSequence += 1
            let payload = EventPayload(
                id: "\(new.id.rawValue)-\(new.eventSequence)",
                type: type.rawValue,
                sequence: new.eventSequence,
                createdAt: UploadDescription.timestamp(date),
                upload: UploadDescription(new)
            ).json()
            for webhook in webhooks {
                events.append(OutboxEvent(uploadID: new.id, sequence: new.eventSequence, type: type, destination: webhook.url, payload: payload, createdAt: date))
            }
        }
        return events
    }
}
