import FerryCore
import Foundation
import GRDB

extension SQLiteCatalog {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE uploads (
                        id TEXT PRIMARY KEY NOT NULL,
                        length INTEGER,
                        "offset" INTEGER NOT NULL,
                        metadata TEXT NOT NULL,
                        concat TEXT NOT NULL,
                        state TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        expires_at REAL
                    );
                    CREATE INDEX uploads_expiry ON uploads(expires_at) WHERE state = 'incomplete';
                    CREATE INDEX uploads_tombstones ON uploads(updated_at) WHERE state IN ('terminated', 'expired', 'lost');
                    CREATE TABLE concat_parts (
                        final_id TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
                        position INTEGER NOT NULL,
                        partial_id TEXT NOT NULL,
                        PRIMARY KEY (final_id, position)
                    );
                    CREATE INDEX concat_parts_partial ON concat_parts(partial_id);
                    """
            )
        }
        migrator.registerMigration("v2: store state") { db in
            try db.execute(sql: "ALTER TABLE uploads ADD COLUMN store_state TEXT")
        }
        migrator.registerMigration("v3: scenarios, owners, business results, outbox") { db in
            try db.execute(
                sql: """
                    ALTER TABLE uploads ADD COLUMN scenario TEXT NOT NULL DEFAULT 'default';
                    ALTER TABLE uploads ADD COLUMN owner TEXT;
                    ALTER TABLE uploads ADD COLUMN sha256 TEXT;
                    ALTER TABLE uploads ADD COLUMN business_status TEXT;
                    ALTER TABLE uploads ADD COLUMN business_result TEXT;
                    ALTER TABLE uploads ADD COLUMN business_attempts INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE uploads ADD COLUMN business_next_at REAL;
                    ALTER TABLE uploads ADD COLUMN event_sequence INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE uploads ADD COLUMN progress_event_at REAL;
                    CREATE INDEX uploads_owner ON uploads(owner, state) WHERE owner IS NOT NULL;
                    CREATE INDEX uploads_owner_created ON uploads(owner, created_at) WHERE owner IS NOT NULL;
                    CREATE INDEX uploads_business ON uploads(business_next_at) WHERE business_status = 'pending';
                    CREATE TABLE outbox (
                        event_id TEXT NOT NULL,
                        destination TEXT NOT NULL,
                        upload_id TEXT NOT NULL,
                        sequence INTEGER NOT NULL,
                        type TEXT NOT NULL,
                        payload TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        state TEXT NOT NULL DEFAULT 'pending',
                        attempts INTEGER NOT NULL DEFAULT 0,
                        next_attempt_at REAL NOT NULL,
                        last_error TEXT,
                        delivered_at REAL,
                        PRIMARY KEY (event_id, destination)
                    );
                    CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE state = 'pending';
                    CREATE INDEX outbox_stream ON outbox(upload_id, destination, sequence) WHERE state = 'pending';
                    CREATE INDEX outbox_upload ON outbox(upload_id);
                    """
            )
        }
        migrator.registerMigration("v4: statistics") { db in
            try db.execute(sql: SQLiteCatalog.statisticsSchema)
        }
        migrator.registerMigration("v5: quota keys") { db in
            // Quotas are counted per key: a token's subject, or an anonymous client's address.
            try db.execute(
                sql: """
                    ALTER TABLE uploads ADD COLUMN quota_key TEXT;
                    UPDATE uploads SET quota_key = 'sub:' || owner WHERE owner IS NOT NULL;
                    DROP INDEX uploads_owner;
                    DROP INDEX uploads_owner_created;
                    CREATE INDEX uploads_quota ON uploads(quota_key, state) WHERE quota_key IS NOT NULL;
                    CREATE INDEX uploads_quota_created ON uploads(quota_key, created_at) WHERE quota_key IS NOT NULL;
                    """
            )
        }
        migrator.registerMigration("v6: network and first byte") { db in
            // What the completion histograms need, kept with the upload so that any node (and
            // a restarted one) labels and measures its completion. Older uploads: `unknown`.
            try db.execute(
                sql: """
                    ALTER TABLE uploads ADD COLUMN network TEXT NOT NULL DEFAULT 'unknown';
                    ALTER TABLE uploads ADD COLUMN first_byte_at REAL;
                    """
            )
        }
        migrator.registerMigration("v7: reserved room") { db in
            // The room a running append to a deferred-length upload holds under `open-bytes`.
            try db.execute(sql: "ALTER TABLE uploads ADD COLUMN reserved_to INTEGER")
        }
        migrator.registerMigration("v8: one payload per event") { db in
            // An event's payload is the same for each of its webhooks: stored once, referenced by
            // its rows, so a delivery's outcome rewrites a short row, not the payload. An event's
            // existing payload keeps the id of its first row.
            try db.execute(
                sql: """
                    CREATE TABLE outbox_payloads (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);
                    INSERT INTO outbox_payloads (id, payload) SELECT min(rowid), min(payload) FROM outbox GROUP BY event_id;
                    ALTER TABLE outbox ADD COLUMN payload_id INTEGER NOT NULL DEFAULT 0;
                    UPDATE outbox SET payload_id = (SELECT min(rowid) FROM outbox f WHERE f.event_id = outbox.event_id);
                    ALTER TABLE outbox DROP COLUMN payload;
                    """
            )
        }
        migrator.registerMigration("v9: content index") { db in
            // Instant upload (docs/instant-upload.md): complete uploads found by content.
            try db.execute(
                sql: """
                    ALTER TABLE uploads ADD COLUMN content_scope TEXT;
                    ALTER TABLE uploads ADD COLUMN announced_sha256 TEXT;
                    ALTER TABLE uploads ADD COLUMN instant_challenge TEXT;
                    CREATE INDEX uploads_content ON uploads(content_scope, sha256, length, created_at)
                        WHERE state = 'complete' AND content_scope IS NOT NULL;
                    """
            )
        }
        migrator.registerMigration("v10: instant statistics") { db in
            try db.execute(sql: "ALTER TABLE upload_stats ADD COLUMN instant INTEGER NOT NULL DEFAULT 0")
        }
        return migrator
    }

    static func apply(_ write: Write, _ db: Database, recent: RecentCreations) throws {
        switch write {
        case .insert(let record, let events, let claim):
            if let claim { try claim.check(usage(of: claim.owner, since: claim.countsCreationsSince, db, recent: recent)) }
            try db.cachedStatement(sql: """
                    INSERT INTO uploads (\(uploadColumns))
                    VALUES (\(uploadPlaceholders))
                    """).execute(
                arguments: arguments(record)
            )
            try insertEvents(events, db)
            for (position, part) in record.partials.enumerated() {
                try db.cachedStatement(sql: "INSERT INTO concat_parts (final_id, position, partial_id) VALUES (?, ?, ?)").execute(
                    arguments: [record.id.rawValue, position, part.rawValue]
                )
            }
            if let key = record.quotaKey { recent.inserted(key, at: record.createdAt.timeIntervalSince1970) }
        case .update(let record, let events, let claim):
            if let claim { try claim.check(usage(of: claim.owner, since: claim.countsCreationsSince, db, recent: recent)) }
            let changed = try updateChangedColumns(record, db)
            // Neither changes once written; if one ever did, the counts start again from the table.
            if changed.contains(where: immutableColumns.contains) { recent.forgetAll() }
            try insertEvents(events, db)
        case .deliveries(let records):
            let statement = try db.cachedStatement(sql: """
                    UPDATE outbox SET state = ?, attempts = ?, next_attempt_at = coalesce(?, next_attempt_at), last_error = ?,
                    delivered_at = ? WHERE event_id = ? AND destination = ?
                    """)
            for record in records {
                let (state, next, error, delivered) = record.outcome.columns
                try statement.execute(arguments: [state, record.attempts, next, error, delivered, record.eventID, record.destination])
            }
        case .purgeDeliveries(let date):
            // An event's rows share its time: its payload goes when none of them is pending.
            let before = date.timeIntervalSince1970
            try db.execute(
                sql: """
                    DELETE FROM outbox_payloads WHERE id IN
                        (SELECT payload_id FROM outbox WHERE created_at < ? GROUP BY payload_id HAVING sum(state = 'pending') = 0)
                    """,
                arguments: [before]
            )
            try db.execute(sql: "DELETE FROM outbox WHERE state <> 'pending' AND created_at < ?", arguments: [before])
        case .remove(let id):
            let removed = recent.isEmpty ? nil : try Row.fetchOne(
                db.cachedStatement(sql: "SELECT quota_key, created_at FROM uploads WHERE id = ?"), arguments: [id.rawValue]
            )
            try db.cachedStatement(sql: "DELETE FROM concat_parts WHERE final_id = ?").execute(arguments: [id.rawValue])
            try db.cachedStatement(sql: "DELETE FROM uploads WHERE id = ?").execute(arguments: [id.rawValue])
            if let removed, let key = removed[0] as String? { recent.removed(key, at: removed[1]) }
        }
    }

    static func arguments(_ record: UploadRecord) -> StatementArguments {
        StatementArguments(values(record))
    }

    /// The row of `record`, in the order of `uploadColumns`.
    static func values(_ record: UploadRecord) -> [DatabaseValue] {
        func value(_ convertible: (some DatabaseValueConvertible)?) -> DatabaseValue { convertible?.databaseValue ?? .null }
        return [
            value(record.id.rawValue), value(record.length), value(record.offset), value(record.metadata.tusHeader), value(record.concatText),
            value(record.state.rawValue), value(record.createdAt.timeIntervalSince1970), value(record.updatedAt.timeIntervalSince1970),
            value(record.expiresAt?.timeIntervalSince1970), value(record.storeState), value(record.scenario), value(record.owner),
            value(record.sha256), value(record.business?.status.rawValue), value(record.business?.json), value(record.business?.attempts ?? 0),
            value(record.business?.nextAttemptAt?.timeIntervalSince1970), value(record.eventSequence),
            value(record.progressEventAt?.timeIntervalSince1970), value(record.quotaKey), value(record.network),
            value(record.firstByteAt?.timeIntervalSince1970), value(record.reservedTo), value(record.contentScope),
            value(record.announcedSHA256), value(record.instantChallenge),
        ]
    }

    /// One `?` per column of `uploadColumns`.
    static let uploadPlaceholders = Array(repeating: "?", count: uploadColumnNames.count).joined(separator: ", ")

    /// The names of `uploadColumns`, quoted, by position.
    static let uploadColumnNames = uploadColumns.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines.union(["\\"])) }

    /// The positions of `created_at` and `quota_key`, which `RecentCreations` relies on.
    static let immutableColumns = Set(["created_at", "quota_key"].compactMap(uploadColumnNames.firstIndex(of:)))

    /// Writes the columns of `record` that differ from its stored row, and only those: SQLite
    /// rewrites every index that covers a column named in an UPDATE, equal value or not, and
    /// most writes change a few columns (an offset, a state, a business result) of a row with
    /// six indexes.
    static func updateChangedColumns(_ record: UploadRecord, _ db: Database) throws -> [Int] {
        guard let stored = try Row.fetchOne(db.cachedStatement(sql: getSQL), arguments: [record.id.rawValue]) else {
            throw FerryError(.catalogFailure, "updated an upload the catalog does not hold")
        }
        let values = values(record)
        var changed: [Int] = []
        for index in 1..<values.count where (stored[index] as DatabaseValue) != values[index] { changed.append(index) }
        guard !changed.isEmpty else { return [] }
        let assignments = changed.map { "\(uploadColumnNames[$0]) = ?" }.joined(separator: ", ")
        try db.cachedStatement(sql: "UPDATE uploads SET \(assignments) WHERE id = ?").execute(
            arguments: StatementArguments(changed.map { values[$0] } + [values[0]])
        )
        return changed
    }

    /// Writes each event's payload once (an event's webhooks are consecutive in `events`) and a
    /// row per webhook that refers to it.
    static func insertEvents(_ events: [OutboxEvent], _ db: Database) throws {
        var payload: (event: String, id: Int64)?
        for event in events {
            if payload?.event != event.id {
                try db.cachedStatement(sql: "INSERT INTO outbox_payloads (payload) VALUES (?)").execute(arguments: [event.payload])
                payload = (event.id, db.lastInsertedRowID)
            }
            try db.cachedStatement(sql: """
                    INSERT INTO outbox (event_id, destination, upload_id, sequence, type, payload_id, created_at, next_attempt_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """).execute(
                arguments: [
                    event.id, event.destination, event.uploadID.rawValue, event.sequence, event.type.rawValue, payload?.id,
                    event.createdAt.timeIntervalSince1970, event.createdAt.timeIntervalSince1970,
                ]
            )
        }
    }

    /// The columns of an outbox row `o` with its payload `p` that `delivery(_:)` reads, by position.
    static let outboxColumns = """
        o.upload_id, o.type, o.state, o.sequence, o.destination, p.payload, o.created_at, o.attempts, o.next_attempt_at, \
        o.last_error, o.delivered_at
        """

    /// The outbox rows, `o`, each with its event's payload, `p`.
    static let outboxRows = "outbox o JOIN outbox_payloads p ON p.id = o.payload_id"

    /// An outbox row selected as `outboxColumns`.
    static func delivery(_ row: Row) throws -> EventDelivery {
        guard let id = UploadID(row[0] as String), let type = UploadEventType(rawValue: row[1]),
            let state = EventDelivery.State(rawValue: row[2])
        else {
            throw FerryError(.catalogFailure, "the catalog holds a malformed outbox row")
        }
        let event = OutboxEvent(
            uploadID: id,
            sequence: row[3],
            type: type,
            destination: row[4],
            payload: row[5],
            createdAt: Date(timeIntervalSince1970: row[6])
        )
        let delivered: Double? = row[10]
        return EventDelivery(
            event: event,
            state: state,
            attempts: row[7],
            nextAttemptAt: Date(timeIntervalSince1970: row[8]),
            lastError: row[9],
            deliveredAt: delivered.map { Date(timeIntervalSince1970: $0) }
        )
    }

    /// The columns of an upload row in the order of `arguments(_:)`: what the insert writes and
    /// reads select, so that `record(_:)` reads them by position (GRDB's lookup by name folds
    /// the case of both names on every access).
    static let uploadColumns = """
        id, length, "offset", metadata, concat, state, created_at, updated_at, expires_at, store_state, \
        scenario, owner, sha256, business_status, business_result, business_attempts, business_next_at, \
        event_sequence, progress_event_at, quota_key, network, first_byte_at, reserved_to, content_scope, announced_sha256, \
        instant_challenge
        """

    /// An upload row selected as `uploadColumns`.
    static func record(_ row: Row) throws -> UploadRecord {
        guard let id = UploadID(row[0] as String),
            let state = UploadState(rawValue: row[5]),
            let metadata = try? UploadMetadata(tusHeader: row[3])
        else {
            throw FerryError(.catalogFailure, "the catalog holds a malformed upload row")
        }
        let (concat, concatRequest) = UploadRecord.concat(fromText: row[4])
        let expires: Double? = row[8]
        let businessStatus: String? = row[13]
        let businessNext: Double? = row[16]
        let progressAt: Double? = row[18]
        let firstByteAt: Double? = row[21]
        return UploadRecord(
            id: id,
            length: row[1],
            offset: row[2],
            metadata: metadata,
            concat: concat,
            state: state,
            createdAt: Date(timeIntervalSince1970: row[6]),
            updatedAt: Date(timeIntervalSince1970: row[7]),
            expiresAt: expires.map { Date(timeIntervalSince1970: $0) },
            storeState: row[9],
            scenario: row[10],
            owner: row[11],
            quotaKey: row[19],
            sha256: row[12],
            business: businessStatus.flatMap(BusinessResult.Status.init(rawValue:)).map {
                BusinessResult(
                    status: $0,
                    json: row[14],
                    attempts: row[15],
                    nextAttemptAt: businessNext.map { Date(timeIntervalSince1970: $0) }
                )
            },
            eventSequence: row[17],
            progressEventAt: progressAt.map { Date(timeIntervalSince1970: $0) },
            concatRequest: concatRequest,
            network: row[20],
            firstByteAt: firstByteAt.map { Date(timeIntervalSince1970: $0) },
            reservedTo: row[22],
            contentScope: row[23],
            announcedSHA256: row[24],
            instantChallenge: row[25]
        )
    }
}
