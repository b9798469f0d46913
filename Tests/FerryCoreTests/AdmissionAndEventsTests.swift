import FerryCore
import Foundation
import Testing

/// Creation admission and event derivation: values in, the decision out.
@Suite("Creation admission and event derivation")
struct AdmissionAndEventsTests {
    static let photos = Scenario(name: "photos", maxSize: 100, contentTypes: ["image/*"], requiredMetadata: ["filename"], allowsAnonymous: true)
    static let private_ = Scenario(name: "private", webhooks: [Webhook(url: "http://hook", secret: "s", events: [.created, .completed, .progress])])
    static let rules = BusinessRules(
        scenarios: ScenarioSet([photos, private_], defaultName: "photos"), quotas: Quotas(openUploads: 5), anonymousQuotas: Quotas(openUploads: 2)
    )
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func metadata(_ pairs: [String: String]) -> UploadMetadata {
        var metadata = UploadMetadata()
        for (key, value) in pairs { try? metadata.set(key, value) }
        return metadata
    }

    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var spec: UploadEngine.CreateSpec
        var scenario: String?
        var error: FerryError.Code?
        var claimOwner: String?
        var testDescription: String { name }
    }

    static let alice = Principal(subject: "alice", scenarios: ["private"])
    static let rows: [Row] = [
        .init(name: "the default scenario, counted per address", spec: .init(length: 10, metadata: metadata(["filename": "a.png"]), address: "10.0.0.1"),
              scenario: "photos", claimOwner: "ip:10.0.0.1"),
        .init(name: "a required metadata key", spec: .init(length: 10, address: "10.0.0.1"), error: .metadataRequired),
        .init(name: "over the scenario's size", spec: .init(length: 101, metadata: metadata(["filename": "a"])), error: .maxSizeExceeded),
        .init(name: "a content type the scenario refuses", spec: .init(length: 1, metadata: metadata(["filename": "a", "filetype": "text/html"])),
              error: .contentTypeNotAllowed),
        .init(name: "an unknown scenario", spec: .init(length: 1, scenario: "nope"), error: .scenarioNotFound),
        .init(name: "a scenario that needs a token", spec: .init(length: 1, scenario: "private"), error: .unauthorized),
        .init(name: "a token for other scenarios", spec: .init(length: 1, metadata: metadata(["filename": "a"]), principal: alice), error: .forbidden),
        .init(name: "a token's own quota", spec: .init(length: 1, scenario: "private", principal: alice, address: "10.0.0.1"),
              scenario: "private", claimOwner: "sub:alice"),
        .init(name: "nobody to count against", spec: .init(length: 1, metadata: metadata(["filename": "a"])), scenario: "photos"),
    ]

    @Test(arguments: rows)
    func admission(_ row: Row) {
        do {
            let admission = try CreationAdmission.decide(row.spec, business: Self.rules, configuration: EngineConfiguration(), at: Self.now)
            #expect(row.error == nil, "admitted, expected \(String(describing: row.error))")
            #expect(admission.scenario.name == row.scenario)
            #expect(admission.claim?.owner == row.claimOwner)
            #expect(admission.claim?.windowStart == Self.now.addingTimeInterval(-60) || admission.claim == nil)
        } catch {
            #expect(error.code == row.error)
        }
    }

    /// Strings with and without characters to escape read back as they were written.
    @Test(arguments: ["plain-id_1.jpg", "", "quote \" and \\ back", "line\nbreak\ttab\r\u{01}", "naïve 照片 🎧", "\u{1F}end"])
    func jsonStringsReadBackUnchanged(_ value: String) throws {
        var writer = JSONWriter()
        writer.string("v", value)
        let json = writer.finish()
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String]
        #expect(object?["v"] == value)
        #expect(!json.utf8.contains(where: { $0 < 0x20 }), "control characters are escaped")
    }

    @Test func eventsFollowTheChange() {
        var created = UploadRecord(id: UploadID.random(), length: 10, createdAt: Self.now, scenario: "private")
        #expect(UploadEvents.derive(from: nil, to: &created, scenario: Self.private_, at: Self.now).map(\.type) == [.created])
        #expect(created.eventSequence == 1)
        var progressed = created
        progressed.offset = 5
        #expect(UploadEvents.derive(from: created, to: &progressed, scenario: Self.private_, at: Self.now).map(\.type) == [.progress])
        #expect(progressed.progressEventAt == Self.now)
        // Not again within the scenario's progress interval.
        var more = progressed
        more.offset = 6
        #expect(UploadEvents.derive(from: progressed, to: &more, scenario: Self.private_, at: Self.now.addingTimeInterval(1)).isEmpty)
        var done = more
        (done.offset, done.state) = (10, .complete)
        let events = UploadEvents.derive(from: more, to: &done, scenario: Self.private_, at: Self.now)
        #expect(events.map(\.type) == [.completed] && events.first?.sequence == 3 && events.first?.destination == "http://hook")
        // A terminated upload: its scenario's webhook does not take that event.
        var gone = done
        gone.state = .terminated
        #expect(UploadEvents.derive(from: done, to: &gone, scenario: Self.private_, at: Self.now).isEmpty)
        // Partials and scenarios without webhooks produce nothing.
        var partial = UploadRecord(id: UploadID.random(), length: 1, concat: .partial, createdAt: Self.now, scenario: "private")
        #expect(UploadEvents.derive(from: nil, to: &partial, scenario: Self.private_, at: Self.now).isEmpty)
        var plain = UploadRecord(id: UploadID.random(), length: 1, createdAt: Self.now, scenario: "photos")
        #expect(UploadEvents.derive(from: nil, to: &plain, scenario: Self.photos, at: Self.now).isEmpty)
    }
}
