import FerryCore
import PostgresNIO

/// The statements every upload runs, as prepared statements: postgres-nio prepares each once
/// per pooled connection (by name, on its first use there; again on a new connection after a
/// reset) and afterwards sends only its values. PostgreSQL then neither parses nor, once it has
/// settled on a generic plan, plans them again: on a saturated machine those cycles went to
/// every small creation-with-upload. Each has a fixed text; the parameter types are declared, so
/// a first call's NULLs cannot decide them. The insert and the update come in two shapes: the
/// common one, without a final's parts or outbox events, and one with those steps, which write
/// nothing when their arrays are empty (the executor sets up every step of a statement, used
/// or not, so the common shape leaves them out).
enum UploadStatements {
    /// The steps after an insert's `upload` step (each with its leading comma), its parameters
    /// from `first`: the lease (its holder and seconds, `text` and `float8`; no lease when the
    /// holder is NULL), and `withPartsAndEvents`, a final's parts (`text[]`) and the events (`outboxSteps`).
    static func insertSteps(from first: Int, withPartsAndEvents: Bool) -> String {
        let lease = """
            ,
            lease AS (
                INSERT INTO upload_leases (upload_id, holder, fence, expires_at, stop_requested)
                SELECT upload.id, $\(first)::text, nextval('upload_lease_fences'),
                    clock_timestamp() + make_interval(secs => $\(first + 1)::float8), false
                FROM upload WHERE $\(first)::text IS NOT NULL
                RETURNING fence
            )
            """
        guard withPartsAndEvents else { return lease }
        return lease + """
            ,
            parts AS (
                INSERT INTO concat_parts (final_id, position, partial_id)
                SELECT upload.id, part.position - 1, part.partial_id
                FROM upload, unnest($\(first + 2)::text[]) WITH ORDINALITY AS part (partial_id, position)
            )
            """ + outboxSteps(from: first + 3)
    }

    static func insertStepTypes(withPartsAndEvents: Bool) -> [PostgresDataType] {
        [.text, .float8] + (withPartsAndEvents ? [.textArray] + outboxTypes : [])
    }

    /// Whether an insert of `record` with `events` needs the shape with parts and events.
    static func needsSteps(_ record: UploadRecord, _ events: [OutboxEvent]) -> Bool {
        !record.partials.isEmpty || !events.isEmpty
    }

    /// The `events` step (with its leading comma): writes the change's outbox events for the
    /// upload the `upload` step returned (none when it matched no row or there are none); six
    /// array parameters from `first`.
    static func outboxSteps(from first: Int) -> String {
        """
        ,
        events AS (
            INSERT INTO outbox (event_id, destination, upload_id, sequence, type, payload, created_at, next_attempt_at)
            SELECT e.event_id, e.destination, upload.id, e.sequence, e.type, e.payload, e.created_at, e.created_at
            FROM upload, unnest($\(first)::text[], $\(first + 1)::text[], $\(first + 2)::bigint[], $\(first + 3)::text[],
                $\(first + 4)::text[], $\(first + 5)::float8[]) AS e (event_id, destination, sequence, type, payload, created_at)
        )
        """
    }

    static let outboxTypes: [PostgresDataType] = [.textArray, .textArray, .int8Array, .textArray, .textArray, .float8Array]

    /// `$first, $first+1, ...`: `count` parameters.
    static func parameters(from first: Int, count: Int) -> String {
        (first..<first + count).map { "$\($0)" }.joined(separator: ", ")
    }

    /// The columns an insert writes (`PostgresBindings.appendValues(of:)` binds them in order).
    static let insertColumns = """
        id, length, "offset", metadata, concat, state, created_at, updated_at, expires_at, store_state,
        scenario, owner, sha256, business_status, business_result, business_attempts, business_next_at,
        event_sequence, progress_event_at, quota_key, network, first_byte_at, reserved_to, content_scope, announced_sha256,
        instant_challenge
        """

    /// How many `insertColumns` there are.
    static let insertColumnCount = 26

    static let insertColumnTypes: [PostgresDataType] = [
        .text, .int8, .int8, .text, .text, .text, .float8, .float8, .float8, .text,
        .text, .text, .text, .text, .text, .int4, .float8,
        .int8, .float8, .text, .text, .float8, .int8, .text, .text, .text,
    ]
}

/// A new upload with its lease (when given), in one statement, so atomic without a transaction.
/// A duplicate id fails on the primary key. Answers the lease's fence (NULL without one). The two
/// shapes differ only in the steps for a final's parts and outbox events.
protocol UploadInsertStatement: PostgresPreparedStatement where Row == Int64? {
    static var withSteps: Bool { get }
    init(record: UploadRecord, events: [OutboxEvent], lease: PostgresCatalog.NewLease?)
    var record: UploadRecord { get }
    var events: [OutboxEvent] { get }
    var lease: PostgresCatalog.NewLease? { get }
}

extension UploadInsertStatement {
    static func text(withSteps: Bool) -> String {
        """
        WITH upload AS (
            INSERT INTO uploads (\(UploadStatements.insertColumns))
            VALUES (\(UploadStatements.parameters(from: 1, count: UploadStatements.insertColumnCount)))
            RETURNING id
        )\(UploadStatements.insertSteps(from: UploadStatements.insertColumnCount + 1, withPartsAndEvents: withSteps))
        SELECT (SELECT fence FROM lease) FROM upload
        """
    }

    static func types(withSteps: Bool) -> [PostgresDataType] {
        UploadStatements.insertColumnTypes + UploadStatements.insertStepTypes(withPartsAndEvents: withSteps)
    }

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: Self.bindingDataTypes.count)
        bindings.appendValues(of: record)
        bindings.appendSteps(of: record, lease: lease, events: events, withPartsAndEvents: Self.withSteps)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Int64? {
        try row.decode(Int64?.self)
    }
}

/// The common insert: no parts, no events.
struct InsertUploadStatement: UploadInsertStatement {
    typealias Row = Int64?
    static let name = "ferry_insert_upload"
    static let withSteps = false
    static let sql = text(withSteps: false)
    static let bindingDataTypes = types(withSteps: false)

    let record: UploadRecord
    let events: [OutboxEvent]
    let lease: PostgresCatalog.NewLease?
}

/// The insert of a final (its parts) or with outbox events.
struct InsertUploadWithStepsStatement: UploadInsertStatement {
    typealias Row = Int64?
    static let name = "ferry_insert_upload_steps"
    static let withSteps = true
    static let sql = text(withSteps: true)
    static let bindingDataTypes = types(withSteps: true)

    let record: UploadRecord
    let events: [OutboxEvent]
    let lease: PostgresCatalog.NewLease?
}

/// `InsertUploadWithStepsStatement` behind the owner's quotas (`QuotaClaim.check`'s rule in SQL, bytes
/// saturating at 2^63 - 1 as there). It first calls `ferry_locked_usage` (migration 7), which
/// takes the owner's advisory lock (held to the end of the statement's transaction) and then
/// counts the owner's usage in a snapshot of its own, taken after the lock was granted. Answers
/// the owner's usage before the insert, whether the row was inserted, and the lease's fence.
struct ClaimedInsertUploadStatement: PostgresPreparedStatement {
    typealias Row = (usage: OwnerUsage, inserted: Bool, fence: Int64?)
    static let name = "ferry_claimed_insert_upload"
    // $1-$6: lock space, key, creations since, creations quota, open uploads quota, open bytes
    // quota, and $7 the bytes claimed; then the upload's values and the steps.
    static let sql = """
        WITH usage AS MATERIALIZED (
            SELECT * FROM ferry_locked_usage($1::integer, $2::text, $3::float8)
        ),
        upload AS (
            INSERT INTO uploads (\(UploadStatements.insertColumns))
            SELECT \(UploadStatements.parameters(from: 8, count: UploadStatements.insertColumnCount)) FROM usage
            WHERE ($4::bigint IS NULL OR usage.recent < $4::bigint)
            AND ($5::bigint IS NULL OR usage.open_uploads < $5::bigint)
            AND ($6::bigint IS NULL OR least(usage.open_bytes::numeric + $7::numeric, 9223372036854775807) <= $6::bigint)
            RETURNING id
        )\(UploadStatements.insertSteps(from: 8 + UploadStatements.insertColumnCount, withPartsAndEvents: true))
        SELECT usage.open_uploads, usage.open_bytes, usage.recent, EXISTS (SELECT 1 FROM upload), (SELECT fence FROM lease)
        FROM usage
        """
    static let bindingDataTypes: [PostgresDataType] = [.int4, .text, .float8, .int8, .int8, .int8, .int8]
        + UploadStatements.insertColumnTypes + UploadStatements.insertStepTypes(withPartsAndEvents: true)

    let record: UploadRecord
    let events: [OutboxEvent]
    let claim: QuotaClaim
    let lease: PostgresCatalog.NewLease?

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: Self.bindingDataTypes.count)
        bindings.append(PostgresCatalog.quotaLockSpace)
        bindings.append(claim.owner)
        bindings.append(claim.countsCreationsSince?.timeIntervalSince1970)
        bindings.append(claim.creating ? claim.quotas.creationsPerMinute.map(Int64.init) : nil)
        bindings.append(claim.creating ? claim.quotas.openUploads.map(Int64.init) : nil)
        bindings.append(claim.quotas.openBytes)
        bindings.append(claim.bytes)
        bindings.appendValues(of: record)
        bindings.appendSteps(of: record, lease: lease, events: events, withPartsAndEvents: true)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        let (open, bytes, recent, inserted, fence) = try row.decode((Int64, Int64, Int64, Bool, Int64?).self)
        return (OwnerUsage(openUploads: Int(open), openBytes: bytes, recentCreations: Int(recent)), inserted, fence)
    }
}

/// An upload's new state with its events, in one statement: the outbox rows are written only
/// if the update matched. Under a fence, it matches only while that fence is still the upload's
/// current one. Answers the id when it matched. Two shapes: with the events step or without.
protocol UploadUpdateStatement: PostgresPreparedStatement where Row == String {
    static var withEvents: Bool { get }
    init(record: UploadRecord, events: [OutboxEvent], fence: Int64?)
    var record: UploadRecord { get }
    var events: [OutboxEvent] { get }
    var fence: Int64? { get }
}

extension UploadUpdateStatement {
    static func text(withEvents: Bool) -> String {
        """
        WITH upload AS (
            UPDATE uploads SET length = $1, "offset" = $2, metadata = $3, concat = $4, state = $5,
                created_at = $6, updated_at = $7, expires_at = $8, store_state = $9,
                scenario = $10, owner = $11, sha256 = $12, business_status = $13, business_result = $14,
                business_attempts = $15, business_next_at = $16, event_sequence = $17, progress_event_at = $18,
                network = $19, first_byte_at = $20, reserved_to = $21, content_scope = $22, announced_sha256 = $23,
                instant_challenge = $24
            WHERE id = $25 AND ($26::bigint IS NULL OR EXISTS (
                SELECT 1 FROM upload_leases WHERE upload_id = $25 AND fence = $26 AND holder IS NOT NULL
            ))
            RETURNING id
        )\(withEvents ? UploadStatements.outboxSteps(from: 27) : "")
        SELECT id FROM upload
        """
    }

    static func types(withEvents: Bool) -> [PostgresDataType] {
        [
            .int8, .int8, .text, .text, .text, .float8, .float8, .float8, .text,
            .text, .text, .text, .text, .text, .int4, .float8, .int8, .float8,
            .text, .float8, .int8, .text, .text, .text, .text, .int8,
        ] + (withEvents ? UploadStatements.outboxTypes : [])
    }

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: Self.bindingDataTypes.count)
        bindings.append(record.length)
        bindings.append(record.offset)
        bindings.append(record.metadata.tusHeader)
        bindings.append(record.concatText)
        bindings.append(record.state.rawValue)
        bindings.append(record.createdAt.timeIntervalSince1970)
        bindings.append(record.updatedAt.timeIntervalSince1970)
        bindings.append(record.expiresAt?.timeIntervalSince1970)
        bindings.append(record.storeState)
        bindings.append(record.scenario)
        bindings.append(record.owner)
        bindings.append(record.sha256)
        bindings.append(record.business?.status.rawValue)
        bindings.append(record.business?.json)
        bindings.append(Int32(record.business?.attempts ?? 0))
        bindings.append(record.business?.nextAttemptAt?.timeIntervalSince1970)
        bindings.append(record.eventSequence)
        bindings.append(record.progressEventAt?.timeIntervalSince1970)
        bindings.append(record.network)
        bindings.append(record.firstByteAt?.timeIntervalSince1970)
        bindings.append(record.reservedTo)
        bindings.append(record.contentScope)
        bindings.append(record.announcedSHA256)
        bindings.append(record.instantChallenge)
        bindings.append(record.id.rawValue)
        bindings.append(fence)
        if Self.withEvents { bindings.appendEvents(events) }
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> String {
        try row.decode(String.self)
    }
}

/// The common update: no events.
struct UpdateUploadStatement: UploadUpdateStatement {
    typealias Row = String
    static let name = "ferry_update_upload"
    static let withEvents = false
    static let sql = text(withEvents: false)
    static let bindingDataTypes = types(withEvents: false)

    let record: UploadRecord
    let events: [OutboxEvent]
    let fence: Int64?
}

/// The update with outbox events.
struct UpdateUploadWithEventsStatement: UploadUpdateStatement {
    typealias Row = String
    static let name = "ferry_update_upload_events"
    static let withEvents = true
    static let sql = text(withEvents: true)
    static let bindingDataTypes = types(withEvents: true)

    let record: UploadRecord
    let events: [OutboxEvent]
    let fence: Int64?
}

/// Gives up several upload locks in one statement, each only while its fence is still the row's.
struct ReleaseLeasesStatement: PostgresPreparedStatement {
    typealias Row = ()
    static let name = "ferry_release_leases"
    static let sql = """
        UPDATE upload_leases SET holder = NULL, stop_requested = false
        WHERE (upload_id, fence) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))
        """
    static let bindingDataTypes: [PostgresDataType] = [.textArray, .int8Array]

    let ids: [String]
    let fences: [Int64]

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 2)
        bindings.append(ids)
        bindings.append(fences)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {}
}

/// An upload's record by id (every request on an existing upload reads it).
struct GetUploadStatement: PostgresPreparedStatement {
    typealias Row = UploadRecord
    static let name = "ferry_get_upload"
    static let sql = "SELECT \(PostgresCatalog.columns) FROM uploads WHERE id = $1"
    static let bindingDataTypes: [PostgresDataType] = [.text]

    let id: String

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(id)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        try PostgresCatalog.record(row)
    }
}

/// Claims an upload's lock for `holder` when it is free or its lease lapsed (the row is made on
/// the first claim); answers the new fence when it did.
struct ClaimLeaseStatement: PostgresPreparedStatement {
    typealias Row = Int64
    static let name = "ferry_claim_lease"
    static let sql = """
        INSERT INTO upload_leases AS l (upload_id, holder, fence, expires_at, stop_requested)
        VALUES ($1, $2, nextval('upload_lease_fences'), clock_timestamp() + make_interval(secs => $3), false)
        ON CONFLICT (upload_id) DO UPDATE
            SET holder = EXCLUDED.holder, fence = EXCLUDED.fence, expires_at = EXCLUDED.expires_at, stop_requested = false
            WHERE l.holder IS NULL OR l.expires_at < clock_timestamp()
        RETURNING fence
        """
    static let bindingDataTypes: [PostgresDataType] = [.text, .text, .float8]

    let id: String
    let holder: String
    let seconds: Double

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 3)
        bindings.append(id)
        bindings.append(holder)
        bindings.append(seconds)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        try row.decode(Int64.self)
    }
}

extension PostgresBindings {
    /// The values of `UploadStatements.insertColumns` for `record`.
    mutating func appendValues(of record: UploadRecord) {
        append(record.id.rawValue)
        append(record.length)
        append(record.offset)
        append(record.metadata.tusHeader)
        append(record.concatText)
        append(record.state.rawValue)
        append(record.createdAt.timeIntervalSince1970)
        append(record.updatedAt.timeIntervalSince1970)
        append(record.expiresAt?.timeIntervalSince1970)
        append(record.storeState)
        append(record.scenario)
        append(record.owner)
        append(record.sha256)
        append(record.business?.status.rawValue)
        append(record.business?.json)
        append(Int32(record.business?.attempts ?? 0))
        append(record.business?.nextAttemptAt?.timeIntervalSince1970)
        append(record.eventSequence)
        append(record.progressEventAt?.timeIntervalSince1970)
        append(record.quotaKey)
        append(record.network)
        append(record.firstByteAt?.timeIntervalSince1970)
        append(record.reservedTo)
        append(record.contentScope)
        append(record.announcedSHA256)
        append(record.instantChallenge)
    }

    /// The values of `UploadStatements.insertSteps`.
    mutating func appendSteps(of record: UploadRecord, lease: PostgresCatalog.NewLease?, events: [OutboxEvent], withPartsAndEvents: Bool) {
        append(lease?.holder)
        append(lease?.seconds)
        guard withPartsAndEvents else { return }
        append(record.partials.map(\.rawValue))
        appendEvents(events)
    }

    /// The values of `UploadStatements.outboxSteps`.
    mutating func appendEvents(_ events: [OutboxEvent]) {
        append(events.map(\.id))
        append(events.map(\.destination))
        append(events.map(\.sequence))
        append(events.map(\.type.rawValue))
        append(events.map(\.payload))
        append(events.map(\.createdAt.timeIntervalSince1970))
    }
}
