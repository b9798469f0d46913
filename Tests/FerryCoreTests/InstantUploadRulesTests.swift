import FerryCore
import Testing

@Suite("Instant upload: scopes")
struct InstantUploadRulesTests {
    /// Each scope keys content so that only the creations it allows can find it: a scenario's
    /// own, an owner's own within a scenario, or every `deployment` scenario's together.
    @Test func eachScopeKeysContentWhereItMayBeFound() {
        func key(_ scope: InstantUploadRules.Scope, _ scenario: String, _ owner: String?) -> String? {
            InstantUploadRules(scope: scope).scopeKey(scenario: scenario, owner: owner)
        }
        #expect(key(.scenario, "voice", "alice") == "s/voice" && key(.scenario, "voice", nil) == "s/voice")
        #expect(key(.scenario, "voice", "alice") != key(.scenario, "video", "alice"))
        #expect(key(.owner, "voice", "alice") == "o/voice/alice" && key(.owner, "voice", "alice") != key(.owner, "voice", "bob"))
        #expect(key(.owner, "voice", nil) == nil, "an anonymous creation has no owner to match")
        #expect(key(.deployment, "voice", "alice") == "*" && key(.deployment, "video", nil) == "*")
        #expect(key(.off, "voice", "alice") == nil)
        // Keys of different scopes never meet: scenario names cannot contain "/", and "*" is not one.
        #expect(key(.scenario, "o", nil) != key(.owner, "o", "x") && !Scenario.isValidName("*"))
        #expect(Scenario.openDefault.instantUpload == InstantUploadRules(), "on, scenario scope, by default")
    }
}
