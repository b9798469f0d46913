import FerryCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The statistics API (docs/statistics.md), behind the admin token:
///
/// - `GET /admin/uploads?state=&scenario=&owner=&network=&dialect=&client=&from=&to=&since=&limit=&cursor=`
///   — newest first, `next` is the cursor of the following page;
/// - `GET /admin/uploads/<id>` — one upload's statistics, its recent requests and its events;
/// - `GET /admin/stats?from=&to=&since=&by=scenario,network` — aggregates and active uploads.
///
/// Times are ISO 8601 or Unix seconds; `since=24h` means from 24 hours ago until now.
enum StatsRoutes {
    static func add(to router: Router<FerryRequestContext>, token: String, stats: any StatsStore, catalog: any OutboxCatalog) {
        router.get("/admin/uploads") { request, _ -> Response in
            guard AdminRoutes.authorized(request.headers[.authorization], token) else { return unauthorized() }
            do {
                let parameters = request.uri.queryParameters
                let window = try Self.window(parameters, defaultSpan: nil)
                var query = StatsQuery(
                    scenario: parameters["scenario"].map(String.init), owner: parameters["owner"].map(String.init),
                    network: parameters["network"].map(String.init), dialect: parameters["dialect"].map(String.init),
                    client: parameters["client"].map(String.init), from: window.from, to: window.to,
                    limit: try parameters["limit"].map { text throws(FerryError) in try Self.number(text, "limit") } ?? 50
                )
                if let state = parameters["state"] {
                    guard let parsed = StatsState(rawValue: String(state)) else {
                        throw FerryError(.invalidQuery, "state is one of \(StatsState.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    query.state = parsed
                }
                if let cursor = parameters["cursor"] {
                    guard let parsed = StatsCursor(token: String(cursor)) else { throw FerryError(.invalidQuery, "cursor is not one this API gave") }
                    query.cursor = parsed
                }
                let page = try await stats.uploads(query)
                return encode(UploadList(uploads: page.uploads.map(StatsView.init), next: page.next?.token))
            } catch {
                return failure(error)
            }
        }
        router.get("/admin/uploads/:id") { request, context -> Response in
            guard AdminRoutes.authorized(request.headers[.authorization], token) else { return unauthorized() }
            guard let raw = context.parameters.get("id"), let id = UploadID(raw) else {
                return AdminRoutes.unknownUpload()
            }
            guard let upload = try await stats.stats(of: id) else {
                // Statistics are written in batches: an upload the catalog holds but the
                // statistics do not yet is pending, not missing.
                guard try await catalog.get(id) != nil else { return AdminRoutes.unknownUpload() }
                return AdminRoutes.json(.accepted, ["id": id.rawValue, "status": "pending"], extra: [.retryAfter: "1"])
            }
            let requests = try await stats.requests(of: id, limit: 200)
            let events = try await catalog.deliveries(of: id)
            return encode(
                UploadDetail(upload: StatsView(upload), requests: requests.map(RequestView.init), events: events.map(AdminRoutes.DeliveryView.init))
            )
        }
        router.get("/admin/stats") { request, _ -> Response in
            guard AdminRoutes.authorized(request.headers[.authorization], token) else { return unauthorized() }
            do {
                let parameters = request.uri.queryParameters
                let window = try Self.window(parameters, defaultSpan: 24 * 3600)
                let from = window.from ?? Date.distantPast, to = window.to ?? Date()
                var dimensions: [StatsDimension] = []
                for name in (parameters["by"].map(String.init) ?? "").split(separator: ",") where !name.isEmpty {
                    guard let dimension = StatsDimension(rawValue: String(name)) else {
                        throw FerryError(.invalidQuery, "by takes \(StatsDimension.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    // A dimension named twice would make two equal keys (a trap in the grouper).
                    if !dimensions.contains(dimension) { dimensions.append(dimension) }
                }
                let groups = try await stats.aggregate(from: from, to: to, by: dimensions)
                let active = try await stats.active(since: Date().addingTimeInterval(-60))
                return encode(
                    StatsReport(
                        from: UploadDescription.timestamp(from), to: UploadDescription.timestamp(to), by: dimensions.map(\.rawValue),
                        active: active, groups: groups.map(AggregateView.init)
                    )
                )
            } catch {
                return failure(error)
            }
        }
    }

    // MARK: Parameters

    static func number(_ text: Substring, _ name: String) throws(FerryError) -> Int {
        guard let value = Int(text), value > 0 else { throw FerryError(.invalidQuery, "\(name) must be a positive whole number") }
        return value
    }

    /// An ISO 8601 time or Unix seconds, between 1970 and 9999 (`nan`, `inf`, `1e300` are refused).
    static func date(_ text: Substring, _ name: String) throws(FerryError) -> Date {
        if let seconds = Double(text) {
            guard let date = ClientTime.date(unixSeconds: seconds) else {
                throw FerryError(.invalidQuery, "\(name) must lie between 1970 and 9999")
            }
            return date
        }
        if let date = try? Date(String(text), strategy: .iso8601) {
            guard ClientTime.isAcceptable(date) else { throw FerryError(.invalidQuery, "\(name) must lie between 1970 and 9999") }
            return date
        }
        throw FerryError(.invalidQuery, "\(name) is an ISO 8601 time or Unix seconds")
    }

    /// `from`/`to`, or `since` (`90s`, `15m`, `24h`, `7d`) before now; `defaultSpan` seconds when none.
    static func window(_ parameters: Parameters, defaultSpan: Double?) throws(FerryError) -> (from: Date?, to: Date?) {
        var from = try parameters["from"].map { text throws(FerryError) in try date(text, "from") }
        let to = try parameters["to"].map { text throws(FerryError) in try date(text, "to") }
        if let since = parameters["since"] {
            guard let span = Self.span(since) else {
                throw FerryError(.invalidQuery, "since is a span like 90s, 15m, 24h or 7d, at most \(Int(maxSpan / 86_400)) days")
            }
            from = Date().addingTimeInterval(-span)
        } else if from == nil, let defaultSpan {
            from = (to ?? Date()).addingTimeInterval(-defaultSpan)
        }
        return (from, to)
    }

    /// The longest `since` span: back to 1970 and no further.
    static let maxSpan: Double = 60 * 365.25 * 86_400

    /// A positive, finite span of at most `maxSpan` seconds; nil otherwise.
    static func span(_ text: Substring) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        guard let unit = text.last.flatMap({ units[$0] }), let count = Double(text.dropLast()), count.isFinite, count > 0 else { return nil }
        let span = count * unit
        return span <= maxSpan ? span : nil
    }

    // MARK: Answers

    static func unauthorized() -> Response { AdminRoutes.unauthorized() }

    static func failure(_ error: any Error) -> Response { AdminRoutes.failure(error) }

    static func encode(_ value: some Encodable) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data()
        return Response(
            status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data))
        )
    }

    struct UploadList: Encodable {
        var uploads: [StatsView]
        var next: String?
    }

    struct UploadDetail: Encodable {
        var upload: StatsView
        var requests: [RequestView]
        var events: [AdminRoutes.DeliveryView]
    }

    struct StatsReport: Encodable {
        var from: String
        var to: String
        var by: [String]
        var active: Int
        var groups: [AggregateView]
    }

    struct StatsView: Encodable {
        var id, scenario, dialect, client, network, state, createdAt: String
        var owner, firstByteAt, completedAt, endedAt, telemetry: String?
        var length: Int64?
        var bytes: Int64
        var requests, interrupted, resumptions: Int
        var timeToComplete, goodput: Double?
        /// Completed by instant upload (its length was not sent).
        var instant: Bool

        init(_ stats: UploadStats) {
            id = stats.id.rawValue
            scenario = stats.scenario
            owner = stats.owner
            dialect = stats.info.dialect
            client = stats.info.client
            network = stats.info.network
            state = stats.state.rawValue
            createdAt = UploadDescription.timestamp(stats.createdAt)
            firstByteAt = stats.firstByteAt.map(UploadDescription.timestamp)
            completedAt = stats.completedAt.map(UploadDescription.timestamp)
            endedAt = stats.endedAt.map(UploadDescription.timestamp)
            telemetry = stats.telemetry
            length = stats.length
            bytes = stats.bytes
            requests = stats.requests
            interrupted = stats.interrupted
            resumptions = stats.resumptions
            timeToComplete = stats.timeToComplete
            goodput = stats.goodput
            instant = stats.instant
        }
    }

    struct RequestView: Encodable {
        var at, method, outcome: String
        var offset, bytes: Int64
        var seconds: Double

        init(_ entry: RequestEntry) {
            at = UploadDescription.timestamp(entry.at)
            method = entry.method
            outcome = entry.outcome
            offset = entry.offset
            bytes = entry.bytes
            seconds = entry.seconds
        }
    }

    struct PercentilesView: Encodable {
        var p50, p90, p99: Double?

        init(_ percentiles: Percentiles) {
            (p50, p90, p99) = (percentiles.p50, percentiles.p90, percentiles.p99)
        }
    }

    struct AggregateView: Encodable {
        var key: [String: String]
        var created, completed, expired, terminated, open: Int
        var successRate: Double?
        var timeToComplete, goodput: PercentilesView
        var bytes: Int64
        var resumptionsPerUpload, interruptedPerUpload: Double
        var instant: Int
        var bytesSaved: Int64

        init(_ aggregate: StatsAggregate) {
            instant = aggregate.instant
            bytesSaved = aggregate.bytesSaved
            key = aggregate.key
            (created, completed, expired, terminated, open) = (aggregate.created, aggregate.completed, aggregate.expired, aggregate.terminated, aggregate.open)
            successRate = aggregate.successRate
            timeToComplete = PercentilesView(aggregate.timeToComplete)
            goodput = PercentilesView(aggregate.goodput)
            bytes = aggregate.bytes
            resumptionsPerUpload = aggregate.resumptionsPerUpload
            interruptedPerUpload = aggregate.interruptedPerUpload
        }
    }
}
