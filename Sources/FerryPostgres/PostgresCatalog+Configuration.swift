import FerryCore
import Foundation

extension PostgresCatalog {
    /// Where the catalog's database is, and how many connections one node may open to it.
    ///
    /// Connections are plain TCP: no TLS. Run the database on the same host or a private
    /// network, or put a TLS tunnel in front of it.
    public struct Configuration: Sendable, CustomStringConvertible {
        public var host: String
        /// TCP port; 5432 by default.
        public var port: Int
        public var username: String
        /// Nil: no password (trust or peer authentication).
        public var password: String?
        public var database: String
        /// The schema holding Ferry's tables; it must exist. Nil: the role's `search_path`
        /// (usually `public`). Lower-case letters, digits and `_` only.
        public var schema: String?
        /// Connections this node may hold open at once (default 10). Every node has its own
        /// pool: keep nodes × this under the server's `max_connections` (100 by default).
        public var maximumConnections: Int = 10
        /// How long opening one connection may take (default 10 s).
        public var connectTimeout: Duration = .seconds(10)

        public init(host: String, port: Int = 5432, username: String, password: String?, database: String) {
            self.host = host
            self.port = port
            self.username = username
            self.password = password
            self.database = database
        }

        /// Parses `postgres://user:password@host:port/database` (scheme `postgresql` too; port
        /// and password optional; user and password percent-decoded).
        ///
        /// Query parameters (`?sslmode=…`) are refused rather than ignored: none is supported.
        public init(url: String) throws(FerryError) {
            func malformed(_ reason: String) -> FerryError {
                // The URL may hold a password: the message never repeats it.
                FerryError(.catalogFailure, "malformed PostgreSQL URL: \(reason) (expected postgres://user:password@host:port/database)")
            }
            guard let components = URLComponents(string: url) else { throw malformed("not a URL") }
            guard let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql" else {
                throw malformed("the scheme must be postgres or postgresql")
            }
            guard var host = components.host, !host.isEmpty else { throw malformed("no host") }
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard let username = components.user, !username.isEmpty else { throw malformed("no user name") }
            let port = components.port ?? 5432
            guard (1...65535).contains(port) else { throw malformed("port \(port) is out of range") }
            let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
            guard !database.isEmpty, !database.contains("/") else { throw malformed("the path must name one database") }
            guard components.percentEncodedQuery == nil, components.fragment == nil else {
                throw malformed("query parameters are not supported (connections are plain TCP, no TLS)")
            }
            self.init(host: host, port: port, username: username, password: components.password, database: database)
        }

        /// The URL without its password, for logs.
        public var description: String {
            "postgres://\(username)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)"
        }

        /// Checks what the URL parser cannot: called once, by `PostgresCatalog.init`.
        func validate() throws(FerryError) {
            guard maximumConnections >= 1 else {
                throw FerryError(.catalogFailure, "the catalog needs at least one connection (got \(maximumConnections))")
            }
            if let schema {
                // Sent as the connection's `search_path`: a list there would widen it.
                let allowed = schema.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
                guard allowed, (1...63).contains(schema.utf8.count), schema.utf8.first.map({ $0 < 0x30 || $0 > 0x39 }) == true else {
                    throw FerryError(.catalogFailure, "the catalog schema must be 1–63 characters of [a-z0-9_], not starting with a digit")
                }
            }
        }
    }
}
