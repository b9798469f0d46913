/// Where a creation may find content the platform already holds, and how hard its challenge is
/// (docs/instant-upload.md).
public struct InstantUploadRules: Sendable, Equatable {
    public enum Scope: String, Sendable, CaseIterable {
        /// Complete uploads of the same scenario, whoever made them.
        case scenario
        /// Complete uploads of the same scenario by the same token subject.
        case owner
        /// Complete uploads of every scenario whose scope is `deployment`.
        case deployment
        /// No lookups and no challenges.
        case off
    }

    public var scope: Scope
    /// Ranges per challenge, 1-16.
    public var ranges: Int
    /// How long a challenge may be answered.
    public var challengeTTL: Duration

    public init(scope: Scope = .scenario, ranges: Int = 4, challengeTTL: Duration = .seconds(120)) {
        self.scope = scope
        self.ranges = ranges
        self.challengeTTL = challengeTTL
    }

    /// The key content of an upload of `scenario` by `owner` is indexed and looked up under:
    /// `*`, `s/<scenario>` or `o/<scenario>/<owner>`; nil when the upload takes no part (scope
    /// `off`, or `owner` without one).
    public func scopeKey(scenario: String, owner: String?) -> String? {
        switch scope {
        case .off: nil
        case .deployment: "*"
        case .scenario: "s/" + scenario
        case .owner: owner.map { "o/\(scenario)/\($0)" }
        }
    }
}
