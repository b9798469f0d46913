import ArgumentParser
import FerryClient
import FerryClientAHC
import Foundation

/// `ferry stats`: the aggregates of `GET /admin/stats` as a table.
struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print upload statistics (success rate, time to complete, goodput) grouped by scenario, network, dialect or client."
    )

    @Option(help: "The server's base URL.")
    var server = "http://127.0.0.1:8080"

    @Option(help: "The admin token (default: $FERRY_ADMIN_TOKEN).")
    var adminToken: String?

    @Option(help: "Group by these, comma-separated: scenario, network, dialect, client.")
    var by = "scenario,network"

    @Option(help: "The window: uploads created this long ago until now (90s, 15m, 24h, 7d).")
    var since = "24h"

    @Flag(help: "Print the JSON answer instead of a table.")
    var json = false

    @OptionGroup var tls: TLSFlags

    func run() async throws {
        guard let token = adminToken ?? ProcessInfo.processInfo.environment["FERRY_ADMIN_TOKEN"] else {
            throw ValidationError("pass --admin-token or set FERRY_ADMIN_TOKEN")
        }
        let base = server.hasSuffix("/") ? String(server.dropLast()) : server
        guard let url = URL(string: "\(base)/admin/stats?by=\(by)&since=\(since)") else { throw ValidationError("not a URL: \(server)") }
        let client = try tls.makeClient()
        let response: TransportResponse
        do {
            response = try await AsyncHTTPClientTransport(client: client)
                .send(TransportRequest(method: .get, url: url, headerFields: [.authorization: "Bearer \(token)"])) { _ in }
            try? await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
        guard response.status == .ok else {
            throw ValidationError("the server answered \(response.status.code): \(String(decoding: response.body.prefix(300), as: UTF8.self))")
        }
        if json {
            print(String(decoding: response.body, as: UTF8.self))
            return
        }
        guard let report = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
            throw ValidationError("the server's answer is not a statistics report")
        }
        print(Self.table(report))
    }

    /// The report as aligned columns, one row per group.
    static func table(_ report: [String: Any]) -> String {
        let dimensions = report["by"] as? [String] ?? []
        let header = dimensions + ["created", "done", "failed", "open", "success", "ttc p50", "ttc p90", "ttc p99", "goodput p50", "goodput p90", "MiB in", "resumed/up"]
        var rows: [[String]] = []
        for group in report["groups"] as? [[String: Any]] ?? [] {
            let key = group["key"] as? [String: String] ?? [:]
            let ttc = group["timeToComplete"] as? [String: Any] ?? [:]
            let goodput = group["goodput"] as? [String: Any] ?? [:]
            let failed = (group["expired"] as? Int ?? 0) + (group["terminated"] as? Int ?? 0)
            rows.append(
                dimensions.map { key[$0] ?? "-" } + [
                    "\(group["created"] as? Int ?? 0)", "\(group["completed"] as? Int ?? 0)", "\(failed)", "\(group["open"] as? Int ?? 0)",
                    (group["successRate"] as? Double).map { String(format: "%.1f%%", $0 * 100) } ?? "-",
                    seconds(ttc["p50"]), seconds(ttc["p90"]), seconds(ttc["p99"]), rate(goodput["p50"]), rate(goodput["p90"]),
                    String(format: "%.1f", Double(group["bytes"] as? Int64 ?? Int64(group["bytes"] as? Int ?? 0)) / 1_048_576),
                    String(format: "%.2f", group["resumptionsPerUpload"] as? Double ?? 0),
                ]
            )
        }
        let widths = header.indices.map { column in ([header[column]] + rows.map { $0[column] }).map(\.count).max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index < dimensions.count ? cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[index] - cell.count) + cell
            }.joined(separator: "  ")
        }
        var lines = ["uploads created \(report["from"] as? String ?? "?") .. \(report["to"] as? String ?? "?"); active now: \(report["active"] as? Int ?? 0)"]
        lines.append(line(header))
        lines += rows.map(line)
        if rows.isEmpty { lines.append("(no uploads in this window)") }
        return lines.joined(separator: "\n")
    }

    static func seconds(_ value: Any?) -> String {
        guard let value = value as? Double else { return "-" }
        return value < 10 ? String(format: "%.2fs", value) : value < 600 ? String(format: "%.0fs", value) : String(format: "%.0fm", value / 60)
    }

    static func rate(_ value: Any?) -> String {
        guard let value = value as? Double else { return "-" }
        return value >= 1_048_576 ? String(format: "%.1f MiB/s", value / 1_048_576) : String(format: "%.0f KiB/s", value / 1024)
    }
}
