/// A setting Ferry cannot start with: which one (a flag, `max-size`, or a file and line,
/// `ferry.conf:12`) and why. Configurations are validated once, at start-up.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// The offending flag (as `--help` names it) or `file:line`.
    public var setting: String
    public var message: String

    public init(_ setting: String, _ message: String) {
        self.setting = setting
        self.message = message
    }

    public var description: String { "\(setting): \(message)" }
}
