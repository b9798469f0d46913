import FerryCore
import FerryProtocol
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The web console at `/console` (docs/console.md): static files shipped as the FerryHTTP
/// target's resources (read once at start-up), and `GET /console/config`, what the page needs to
/// know (the upload path and the scenarios' public rules; nothing secret).
enum ConsoleRoutes {
    static let files: [String: String] = [
        "index.html": "text/html; charset=utf-8", "console.css": "text/css; charset=utf-8",
        "uploader.js": "text/javascript; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8",
        "charts.js": "text/javascript; charset=utf-8", "common.js": "text/javascript; charset=utf-8",
    ]

    /// Only the page's own scripts and styles; requests go to this server only.
    static let policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    /// The files, or nil (with a warning) when the resources are missing.
    static func load(logger: Logger) -> [String: ByteBuffer]? {
        guard let directory = Bundle.module.url(forResource: "Console", withExtension: nil) else {
            logger.warning("console.missing", metadata: ["reason": "the Console resources are not next to the binary"])
            return nil
        }
        var loaded: [String: ByteBuffer] = [:]
        for name in files.keys {
            guard let data = try? Data(contentsOf: directory.appendingPathComponent(name)) else {
                logger.warning("console.missing", metadata: ["file": "\(name)"])
                return nil
            }
            loaded[name] = ByteBuffer(bytes: data)
        }
        return loaded
    }

    static func add(to router: Router<FerryRequestContext>, endpoints: UploadEndpoints, adminAPI: Bool, logger: Logger) {
        guard let loaded = load(logger: logger) else { return }
        @Sendable func serve(_ name: String) -> Response {
            guard let body = loaded[name], let type = files[name] else { return Response(status: .notFound) }
            return Response(
                status: .ok,
                headers: [
                    .contentType: type, .cacheControl: "no-cache", .contentSecurityPolicy: policy,
                    HTTPField.Name("X-Content-Type-Options")!: "nosniff", HTTPField.Name("Referrer-Policy")!: "no-referrer",
                ],
                body: ResponseBody(byteBuffer: body)
            )
        }
        router.get("/console") { _, _ in serve("index.html") }
        router.get("/console/config") { _, _ -> Response in
            let engine = endpoints.engine
            let scenarios = engine.business.scenarios
            let config = ConsoleConfig(
                uploads: endpoints.routes.basePath,
                defaultScenario: scenarios.defaultName,
                scenarios: scenarios.scenarios.values.sorted { $0.name < $1.name }.map { scenario in
                    ConsoleConfig.ScenarioView(
                        name: scenario.name, anonymous: scenario.allowsAnonymous,
                        maxSize: [scenario.maxSize, engine.capabilities.maxSize].compactMap { $0 }.min(),
                        contentTypes: scenario.contentTypes, requiredMetadata: scenario.requiredMetadata
                    )
                },
                statistics: adminAPI && endpoints.statistics != nil
            )
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return Response(
                status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: (try? encoder.encode(config)) ?? Data()))
            )
        }
        router.get("/console/:file") { _, context -> Response in
            serve(context.parameters.get("file") ?? "")
        }
    }

    struct ConsoleConfig: Encodable {
        struct ScenarioView: Encodable {
            var name: String
            var anonymous: Bool
            var maxSize: Int64?
            var contentTypes: [String]
            var requiredMetadata: [String]
        }

        var uploads: String
        var defaultScenario: String?
        var scenarios: [ScenarioView]
        /// Whether the dashboard has an admin API to read.
        var statistics: Bool
    }
}
