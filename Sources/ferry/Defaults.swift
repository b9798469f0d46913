import FerryServer
import Foundation

/// The defaults `ferry serve` states in `--help` and falls back to: read from each component's
/// own configuration, never restated here.
enum Defaults {
    static let server = FerryServerConfiguration()
    static let engine = server.engine
    static let http = server.http
    static let limits = http.limits
    static let routes = server.tus
    static let stats = server.statistics
    static let s3 = S3StorageConfiguration(endpoint: URL(fileURLWithPath: "/"), bucket: "", accessKeyID: "", secretAccessKey: "")
    static let anonymousOpenUploads = server.business.anonymousQuotas.openUploads ?? 0
    static let logLevel = "info"
    static let logFormat = "text"

    /// `10G`, `8M`, `32K`, or plain bytes: the largest binary unit that divides evenly.
    static func bytes(_ value: Int64?) -> String {
        guard let value, value > 0 else { return "0" }
        for (suffix, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] where value % (Int64(1) << shift) == 0 {
            return "\(value >> shift)\(suffix)"
        }
        return String(value)
    }

    /// `30d`, `24h`, `15m`, `60s`, `500ms`: seconds up to ten minutes, then the largest whole
    /// unit (days from a week).
    static func duration(_ value: Duration?) -> String {
        guard let value, value > .zero else { return "0" }
        let milliseconds = value.components.seconds * 1000 + value.components.attoseconds / 1_000_000_000_000_000
        guard milliseconds % 1000 == 0 else { return "\(milliseconds)ms" }
        let seconds = milliseconds / 1000
        if seconds < 600 { return "\(seconds)s" }
        if seconds >= 7 * 86_400, seconds % 86_400 == 0 { return "\(seconds / 86_400)d" }
        if seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        if seconds % 60 == 0 { return "\(seconds / 60)m" }
        return "\(seconds)s"
    }
}
