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
        return migrator
    }

    static func apply(_ write: Write, _ db: Database) throws {
        switch write {
        case .insert(let record, let events, let claim):
            if let claim { try claim.check(usage(of: claim.owner, since: claim.countsCreationsSince, db)) }
            try db.cachedStatement(sql: """
                    INSERT INTO uploads (id, length, "offset", metadata, concat, state, created_at, updated_at, expires_at, store_state,
                        scenario, owner, sha256, business_status, business_result, business_attempts, business_next_at,
                        event_sequence, progress_event_at, quota_key, network, first_byte_at, reserved_to)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """).execute(
                arguments: arguments(record)
            )
            try insertEvents(events, db)
            for (position, part) in record.partials.enumerated() {
                try db.cachedStatement(sql: "INSERT INTO concat_parts (final_id, position, partial_id) VALUES (?, ?, ?)").execute(
                    arguments: [record.id.rawValue, position, part.rawValue]
                )
            }
        case .update(let record, let events, let claim):
            if let claim { try claim.check(usage(of: claim.owner, since: claim.countsCreationsSince, db)) }
            var values = arguments(record)
            _ = values.append(contentsOf: [record.id.rawValue])
            try db.cachedStatement(sql: """
                    UPDATE uploads SET id = ?, length = ?, "offset" = ?, metadata = ?, concat = ?, state = ?,
                    created_at = ?, updated_at = ?, expires_at = ?, store_state = ?, scenario = ?, owner = ?, sha256 = ?,
                    business_status = ?, business_result = ?, business_attempts = ?, business_next_at = ?,
                    event_sequence = ?, progress_event_at = ?, quota_key = ?, network = ?, first_byte_at = ?, reserved_to = ?
                    WHERE id = ?
                    """).execute(
                arguments: values
            )
            if db.changesCount == 0 {
                throw FerryError(.catalogFailure, "updated an upload the catalog does not hold")
            }
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
            try db.execute(sql: "DELETE FROM outbox WHERE state <> 'pending' AND created_at < ?", arguments: [date.timeIntervalSince1970])
        case .remove(let id):
            try db.cachedStatement(sql: "DELETE FROM concat_parts WHERE final_id = ?").execute(arguments: [id.rawValue])
            try db.cachedStatement(sql: "DELETE FROM uploads WHERE id = ?").execute(arguments: [id.rawValue])
        }
    }

    static func arguments(_ record: UploadRecord) -> StatementArguments {
        return [
            record.id.rawValue, record.length, record.offset, record.metadata.tusHeader, record.concatText, record.state.rawValue,
            record.createdAt.timeIntervalSince1970, record.updatedAt.timeIntervalSince1970,
            record.expiresAt?.timeIntervalSince1970, record.storeState, record.scenario, record.owner, record.sha256,
            record.business?.status.rawValue, record.business?.json, record.business?.attempts ?? 0,
            record.business?.nextAttemptAt?.timeIntervalSince1970, record.eventSequence,
            record.progressEventAt?.timeIntervalSince1970, record.quotaKey, record.network, record.firstByteAt?.timeIntervalSince1970,
            record.reservedTo,
        ]
    }

    static func insertEvents(_ events: [OutboxEvent], _ db: Database) throws {
        for event in events {
            try db.cachedStatement(sql: """
                    INSERT INTO outbox (event_id, destination, upload_id, sequence, type, payload, created_at, next_attempt_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """).execute(
                arguments: [
                    event.id, event.destination, event.uploadID.rawValue, event.sequence, event.type.rawValue, event.payload,
                    event.createdAt.timeIntervalSince1970, event.createdAt.timeIntervalSince1970,
                ]
            )
        }
    }

    static func delivery(_ row: Row) throws -> EventDelivery {
        guard let id = UploadID(row["upload_id"] as String), let type = UploadEventType(rawValue: row["type"]),
            let state = EventDelivery.State(rawValue: row["state"])
        else {
            throw FerryError(.catalogFailure, "the catalog holds a malformed outbox row")
        }
        let event = OutboxEvent(
            uploadID: id,
            sequence: row["sequence"],
            type: type,
            destination: row["destination"],
            payload: row["payload"],
            createdAt: Date(timeIntervalSince1970: row["created_at"])
        )
        let delivered: Double? = row["delivered_at"]
        return EventDelivery(
            event: event,
            state: state,
            attempts: row["attempts"],
            nextAttemptAt: Date(timeIntervalSince1970: row["next_attempt_at"]),
            lastError: row["last_error"],
            deliveredAt: delivered.map { Date(timeIntervalSince1970: $0) }
        )
    }

    static func record(_ row: Row) throws -> UploadRecord {
        guard let id = UploadID(row["id"] as String),
            let state = UploadState(rawValue: row["state"]),
            let metadata = try? UploadMetadata(tusHeader: row["metadata"])
        else {
            throw FerryError(.catalogFailure, "the catalog holds a malformed upload row")
        }
        let (concat, concatRequest) = UploadRecord.concat(fromText: row["concat"])
        let expires: Double? = row["expires_at"]
        let businessStatus: String? = row["business_status"]
        let businessNext: Double? = row["business_next_at"]
        let progressAt: Double? = row["progress_event_at"]
        let firstByteAt: Double? = row["first_byte_at"]
        return UploadRecord(
            id: id,
            length: row["length"],
            offset: row["offset"],
            metadata: metadata,
            concat: concat,
            state: state,
            createdAt: Date(timeIntervalSince1970: row["created_at"]),
            updatedAt: Date(timeIntervalSince1970: row["updated_at"]),
            expiresAt: expires.map { Date(timeIntervalSince1970: $0) },
            storeState: row["store_state"],
            scenario: row["scenario"],
            owner: row["owner"],
            quotaKey: row["quota_key"],
            sha256: row["sha256"],
            business: businessStatus.flatMap(BusinessResult.Status.init(rawValue:)).map {
                BusinessResult(
                    status: $0,
                    json: row["business_result"],
                    attempts: row["business_attempts"],
                    nextAttemptAt: businessNext.map { Date(timeIntervalSince1970: $0) }
                )
            },
            eventSequence: row["event_sequence"],
            progressEventAt: progressAt.map { Date(timeIntervalSince1970: $0) },
            concatRequest: concatRequest,
            network: row["network"],
            firstByteAt: firstByteAt.map { Date(timeIntervalSince1970: $0) },
            reservedTo: row["reserved_to"]
        )
    }
}
