import FerryAuth
import FerryCore
import FerryHooks
import FerryHTTP

/// Reads the configuration file (docs/business.md): `[section]` headers, `key = value` lines,
/// `#` comments. Every mistake is reported with the file, line and reason.
public enum ConfigFile {
    /// Parses `text` (the contents of `path`); `readFile` loads the key files it names.
    public static func parse(
        _ text: String,
        path: String,
        readFile: @escaping (String) throws -> String
    ) throws(ConfigurationError) -> BusinessConfiguration {
        var parser = Parser(path: path, readFile: readFile)
        var number = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            try parser.line(String(raw), number)
        }
        return try parser.finish()
    }

    struct Entry {
        var line: Int
        var key: String
        var value: String
    }

    struct WebhookDraft {
        var line: Int
        var url: String
        var secret: String?
        var events: Set<UploadEventType>?
        var batch: Int?
    }

    struct ScenarioDraft {
        var line: Int
        var scenario: Scenario
        var webhooks: [WebhookDraft] = []
        var defaultSecret: String?
        var defaultEvents: Set<UploadEventType>?
        var defaultBatch: Int?
        var seen: Set<String> = []
    }

    struct Parser {
        let path: String
        let readFile: (String) throws -> String
        var section = ""
        var sectionLine = 0
        var seen: [String: Set<String>] = [:]
        var configuration = BusinessConfiguration(scenarios: ScenarioSet([], defaultName: nil))
        var scenarios: [ScenarioDraft] = []
        var defaultScenario: (name: String, line: Int)?
        var sawScenario = false
        var tlsLine = 0

        init(path: String, readFile: @escaping (String) throws -> String) {
            self.path = path
            self.readFile = readFile
        }

        func fail(_ line: Int, _ message: String) -> ConfigurationError {
            ConfigurationError("\(path):\(line)", message)
        }

        mutating func line(_ raw: String, _ number: Int) throws(ConfigurationError) {
            let text = Self.stripComment(raw).trimmingCharacters(in: .whitespaces)
            if text.isEmpty { return }
            if text.hasPrefix("[") {
                guard text.hasSuffix("]") else { throw fail(number, "a section header is [name] or [scenario NAME]") }
                let header = text.dropFirst().dropLast().split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                sectionLine = number
                switch header.first {
                case "server", "auth", "events", "anonymous", "tls":
                    guard header.count == 1 else { throw fail(number, "[\(header[0])] takes no name") }
                    guard seen[header[0]] == nil else { throw fail(number, "[\(header[0])] appears twice") }
                    seen[header[0]] = []
                    section = header[0]
                    if section == "tls" { tlsLine = number }
                case "scenario":
                    guard header.count == 2, Scenario.isValidName(header[1]) else {
                        throw fail(number, "a scenario is [scenario NAME], NAME being 1-64 characters of a-z 0-9 - _")
                    }
                    guard !scenarios.contains(where: { $0.scenario.name == header[1] }) else {
                        throw fail(number, "the scenario \(header[1]) is declared twice")
                    }
                    scenarios.append(ScenarioDraft(line: number, scenario: Scenario(name: header[1])))
                    section = "scenario"
                    sawScenario = true
                default:
                    throw fail(number, "unknown section \(text); sections are [server], [tls], [auth], [anonymous], [events], [scenario NAME]")
                }
                return
            }
            guard let equals = text.firstIndex(of: "=") else { throw fail(number, "expected key = value") }
            let key = text[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            var value = text[text.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            let entry = Entry(line: number, key: key, value: value)
            switch section {
            case "server": try server(entry)
            case "auth": try auth(entry)
            case "events": try events(entry)
            case "anonymous": try anonymous(entry)
            case "scenario": try scenario(entry)
            case "tls": try tls(entry)
            default: throw fail(number, "\(key) must be inside a section ([server], [tls], [auth], [anonymous], [events] or [scenario NAME])")
            }
        }

        /// Removes a `#` comment that is not inside quotes.
        static func stripComment(_ line: String) -> String {
            var quoted = false
            var result = ""
            for character in line {
                if character == "\"" { quoted.toggle() }
                if character == "#", !quoted { break }
                result.append(character)
            }
            return result
        }

        mutating func once(_ entry: Entry) throws(ConfigurationError) {
            guard seen[section, default: []].insert(entry.key).inserted else {
                throw fail(entry.line, "\(entry.key) is set twice in [\(section)]")
            }
        }

        /// `[tls]`: `certificate` (the PEM chain, leaf first) and `key`, both required.
        mutating func tls(_ entry: Entry) throws(ConfigurationError) {
            try once(entry)
            var files = configuration.tls ?? TLSFiles(certificateChain: "", privateKey: "")
            switch entry.key {
            case "certificate": files.certificateChain = entry.value
            case "key": files.privateKey = entry.value
            default: throw fail(entry.line, "unknown key \(entry.key) in [tls] (certificate, key)")
            }
            configuration.tls = files
        }

        mutating func server(_ entry: Entry) throws(ConfigurationError) {
            try once(entry)
            switch entry.key {
            case "default-scenario": defaultScenario = (entry.value, entry.line)
            case "admin-token":
                guard entry.value.utf8.count >= 16 else { throw fail(entry.line, "admin-token must be at least 16 characters") }
                configuration.adminToken = entry.value
            default: throw fail(entry.line, "unknown key \(entry.key) in [server] (default-scenario, admin-token)")
            }
        }

        mutating func auth(_ entry: Entry) throws(ConfigurationError) {
            if entry.key != "public-key-file" { try once(entry) }
            switch entry.key {
            case "hs256-secret":
                guard entry.value.utf8.count >= 32 else { throw fail(entry.line, "hs256-secret must be at least 32 bytes long") }
                configuration.auth.hs256Secret = entry.value
            case "public-key-file": configuration.auth.publicKeysPEM.append(try file(entry))
            case "jwks-file": configuration.auth.jwksJSON = try file(entry)
            case "issuer": configuration.auth.issuer = entry.value
            case "audience": configuration.auth.audience = entry.value
            default:
                if try quota(entry, into: &configuration.quotas, unlimited: false) { return }
                throw fail(
                    entry.line,
                    "unknown key \(entry.key) in [auth] (hs256-secret, public-key-file, jwks-file, issuer, audience, open-uploads, open-bytes, creations-per-minute, max-size)"
                )
            }
        }

        /// Quotas of each anonymous client address; `unlimited` lifts one (open-uploads has a
        /// default, `Quotas.anonymousDefault`).
        mutating func anonymous(_ entry: Entry) throws(ConfigurationError) {
            try once(entry)
            guard try quota(entry, into: &configuration.anonymousQuotas, unlimited: true) else {
                throw fail(entry.line, "unknown key \(entry.key) in [anonymous] (open-uploads, open-bytes, creations-per-minute, max-size)")
            }
        }

        /// Sets the quota `entry` names in `quotas` ([auth] and [anonymous] share the keys);
        /// false when the key is no quota. `unlimited` lets the value `unlimited` lift a limit.
        func quota(_ entry: Entry, into quotas: inout Quotas, unlimited: Bool) throws(ConfigurationError) -> Bool {
            let onError = { (message: String) in fail(entry.line, message) }
            let lifted = unlimited && entry.value.lowercased() == "unlimited"
            switch entry.key {
            case "open-uploads": quotas.openUploads = lifted ? nil : Int(try Values.count(entry.value, entry.key, onError))
            case "open-bytes": quotas.openBytes = lifted ? nil : try Values.size(entry.value, entry.key, onError)
            case "creations-per-minute": quotas.creationsPerMinute = lifted ? nil : Int(try Values.count(entry.value, entry.key, onError))
            case "max-size": quotas.maxSize = lifted ? nil : try Values.size(entry.value, entry.key, onError)
            default: return false
            }
            return true
        }

        func file(_ entry: Entry) throws(ConfigurationError) -> String {
            do {
                return try readFile(entry.value)
            } catch {
                throw fail(entry.line, "\(entry.key): cannot read \(entry.value) (\(error))")
            }
        }

        mutating func events(_ entry: Entry) throws(ConfigurationError) {
            try once(entry)
            let onError = { (message: String) in fail(entry.line, message) }
            switch entry.key {
            case "retry-base": configuration.events.retryBase = try Values.duration(entry.value, entry.key, onError)
            case "retry-cap": configuration.events.retryCap = try Values.duration(entry.value, entry.key, onError)
            case "dead-letter-after": configuration.events.deadLetterAfter = try Values.duration(entry.value, entry.key, onError)
            case "delivery-timeout": configuration.events.deliveryTimeout = try Values.duration(entry.value, entry.key, onError)
            case "concurrency": configuration.events.concurrency = Int(try Values.count(entry.value, entry.key, onError))
            default:
                throw fail(entry.line, "unknown key \(entry.key) in [events] (retry-base, retry-cap, dead-letter-after, delivery-timeout, concurrency)")
            }
        }

        mutating func scenario(_ entry: Entry) throws(ConfigurationError) {
            guard var draft = scenarios.popLast() else { return }
            defer { scenarios.append(draft) }
            let repeatable: Set<String> = ["webhook", "webhook-secret", "events", "webhook-batch"]
            if !repeatable.contains(entry.key) {
                guard draft.seen.insert(entry.key).inserted else {
                    throw fail(entry.line, "\(entry.key) is set twice in [scenario \(draft.scenario.name)]")
                }
            }
            let onError = { (message: String) in fail(entry.line, message) }
            switch entry.key {
            case "max-size": draft.scenario.maxSize = try Values.size(entry.value, entry.key, onError)
            case "content-types":
                let types = Values.list(entry.value).map { $0.lowercased() }
                for type in types where !Values.isMediaType(type) {
                    throw fail(entry.line, "content-types: \"\(type)\" is not a media type (image/jpeg, audio/*)")
                }
                draft.scenario.contentTypes = types
            case "required-metadata": draft.scenario.requiredMetadata = Values.list(entry.value)
            case "ttl": draft.scenario.expiry = try Values.duration(entry.value, entry.key, onError)
            case "checksum":
                guard entry.value == "required" || entry.value == "optional" else { throw fail(entry.line, "checksum is required or optional") }
                draft.scenario.checksumRequired = entry.value == "required"
            case "anonymous": draft.scenario.allowsAnonymous = try Values.bool(entry.value, entry.key, onError)
            case "pre-create": draft.scenario.preCreate = try Values.url(entry.value, entry.key, onError)
            case "pre-finish": draft.scenario.preFinish = try Values.url(entry.value, entry.key, onError)
            case "callback-timeout": draft.scenario.callbackTimeout = try Values.duration(entry.value, entry.key, onError)
            case "progress-interval": draft.scenario.progressInterval = try Values.duration(entry.value, entry.key, onError)
            case "directory":
                let directory = entry.value.hasSuffix("/") ? String(entry.value.dropLast()) : entry.value
                guard Scenario.isValidDirectory(directory) else {
                    throw fail(entry.line, "directory: \"\(entry.value)\" is not a relative path of a-z 0-9 - _ segments")
                }
                draft.scenario.directory = directory
            case "instant-upload":
                guard let scope = InstantUploadRules.Scope(rawValue: entry.value) else {
                    throw fail(entry.line, "instant-upload is \(InstantUploadRules.Scope.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                draft.scenario.instantUpload.scope = scope
            case "instant-upload-ranges":
                let ranges = Int(try Values.count(entry.value, entry.key, onError))
                guard (1...16).contains(ranges) else { throw fail(entry.line, "instant-upload-ranges is between 1 and 16") }
                draft.scenario.instantUpload.ranges = ranges
            case "instant-upload-challenge-ttl": draft.scenario.instantUpload.challengeTTL = try Values.duration(entry.value, entry.key, onError)
            case "webhook": draft.webhooks.append(WebhookDraft(line: entry.line, url: try Values.url(entry.value, entry.key, onError)))
            case "webhook-secret":
                guard entry.value.utf8.count >= 16 else { throw fail(entry.line, "webhook-secret must be at least 16 characters") }
                if draft.webhooks.isEmpty || draft.webhooks[draft.webhooks.count - 1].secret != nil {
                    guard draft.webhooks.isEmpty, draft.defaultSecret == nil else {
                        throw fail(entry.line, "webhook-secret is set twice for one webhook")
                    }
                    draft.defaultSecret = entry.value
                } else {
                    draft.webhooks[draft.webhooks.count - 1].secret = entry.value
                }
            case "events":
                var events = Set<UploadEventType>()
                for name in Values.list(entry.value) {
                    guard let event = UploadEventType(rawValue: name) else {
                        throw fail(entry.line, "events: unknown event \(name) (\(UploadEventType.allCases.map(\.rawValue).joined(separator: ", ")))")
                    }
                    events.insert(event)
                }
                if draft.webhooks.isEmpty || draft.webhooks[draft.webhooks.count - 1].events != nil {
                    guard draft.webhooks.isEmpty, draft.defaultEvents == nil else { throw fail(entry.line, "events is set twice for one webhook") }
                    draft.defaultEvents = events
                } else {
                    draft.webhooks[draft.webhooks.count - 1].events = events
                }
            case "webhook-batch":
                let batch = Int(try Values.count(entry.value, entry.key, onError))
                guard (1...1000).contains(batch) else { throw fail(entry.line, "webhook-batch is between 1 and 1000 events") }
                if draft.webhooks.isEmpty || draft.webhooks[draft.webhooks.count - 1].batch != nil {
                    guard draft.webhooks.isEmpty, draft.defaultBatch == nil else { throw fail(entry.line, "webhook-batch is set twice for one webhook") }
                    draft.defaultBatch = batch
                } else {
                    draft.webhooks[draft.webhooks.count - 1].batch = batch
                }
            default:
                throw fail(
                    entry.line,
                    "unknown key \(entry.key) in [scenario \(draft.scenario.name)] (max-size, content-types, required-metadata, ttl, checksum, anonymous, pre-create, pre-finish, callback-timeout, webhook, webhook-secret, events, webhook-batch, progress-interval, directory, instant-upload, instant-upload-ranges, instant-upload-challenge-ttl)"
                )
            }
        }

        mutating func finish() throws(ConfigurationError) -> BusinessConfiguration {
            // A [tls] section, even an empty one, asks for HTTPS: without both files it cannot serve it.
            if seen["tls"] != nil, configuration.tls.map({ $0.certificateChain.isEmpty || $0.privateKey.isEmpty }) ?? true {
                throw fail(tlsLine, "[tls] needs both certificate and key")
            }
            var built: [Scenario] = []
            var secrets: [String: String] = [:]
            var batches: [String: Int] = [:]
            for draft in scenarios {
                var scenario = draft.scenario
                for webhook in draft.webhooks {
                    guard let secret = webhook.secret ?? draft.defaultSecret else {
                        throw fail(webhook.line, "the webhook \(webhook.url) needs a webhook-secret")
                    }
                    if let other = secrets[webhook.url], other != secret {
                        throw fail(webhook.line, "the webhook \(webhook.url) is declared elsewhere with another secret")
                    }
                    secrets[webhook.url] = secret
                    let batch = webhook.batch ?? draft.defaultBatch ?? 1
                    if let other = batches[webhook.url], other != batch {
                        throw fail(webhook.line, "the webhook \(webhook.url) is declared elsewhere with another webhook-batch")
                    }
                    batches[webhook.url] = batch
                    let events = webhook.events ?? draft.defaultEvents ?? Set(UploadEventType.allCases)
                    scenario.webhooks.append(Webhook(url: webhook.url, secret: secret, events: events, batch: batch))
                }
                if !scenario.allowsAnonymous, !configuration.auth.hasKeys {
                    throw fail(draft.line, "the scenario \(scenario.name) needs tokens (anonymous = false) but [auth] configures no key")
                }
                built.append(scenario)
            }
            if !sawScenario {
                // No scenario declared: the embedded default stays, with the file's auth.
                built = [.openDefault]
                defaultScenario = defaultScenario ?? ("default", 0)
            }
            if let (name, line) = defaultScenario, !built.contains(where: { $0.name == name }) {
                throw fail(line, "default-scenario names \(name), which is not declared")
            }
            configuration.scenarios = ScenarioSet(built, defaultName: defaultScenario?.name)
            return configuration
        }
    }
}
