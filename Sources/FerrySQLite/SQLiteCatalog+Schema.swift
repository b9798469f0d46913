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
        return migrator
    }

    static func apply(_ write: Write, _ db: Database) throws {
        switch write {
        case .insert(let record):
            try db.execute(
                sql: """
                    INSERT INTO uploads (id, length, "offset", metadata, concat, state, created_at, updated_at, expires_at, store_state)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: arguments(record)
            )
            for (position, part) in record.partials.enumerated() {
                try db.execute(
                    sql: "INSERT INTO concat_parts (final_id, position, partial_id) VALUES (?, ?, ?)",
                    arguments: [record.id.rawValue, position, part.rawValue]
                )
            }
        case .update(let record):
            var values = arguments(record)
            _ = values.append(contentsOf: [record.id.rawValue])
            try db.execute(
                sql: """
                    UPDATE uploads SET id = ?, length = ?, "offset" = ?, metadata = ?, concat = ?, state = ?,
                    created_at = ?, updated_at = ?, expires_at = ?, store_state = ? WHERE id = ?
                    """,
                arguments: values
            )
            if db.changesCount == 0 {
                throw FerryError(.catalogFailure, "updated an upload the catalog does not hold")
            }
        case .remove(let id):
            try db.execute(sql: "DELETE FROM concat_parts WHERE final_id = ?", arguments: [id.rawValue])
            try db.execute(sql: "DELETE FROM uploads WHERE id = ?", arguments: [id.rawValue])
        }
    }

    static func arguments(_ record: UploadRecord) -> StatementArguments {
        let concat: String
        switch record.concat {
        case .none: concat = "none"
        case .partial: concat = "partial"
        case .final(let parts): concat = "final " + parts.map(\.rawValue).joined(separator: " ")
        }
        return [
            record.id.rawValue, record.length, record.offset, record.metadata.tusHeader, concat, record.state.rawValue,
            record.createdAt.timeIntervalSince1970, record.updatedAt.timeIntervalSince1970,
            record.expiresAt?.timeIntervalSince1970, record.storeState,
        ]
    }

    static func record(_ row: Row) throws -> UploadRecord {
        guard let id = UploadID(row["id"] as String),
            let state = UploadState(rawValue: row["state"]),
            let metadata = try? UploadMetadata(tusHeader: row["metadata"])
        else {
            throw FerryError(.catalogFailure, "the catalog holds a malformed upload row")
        }
        let concatText: String = row["concat"]
        let concat: ConcatRole
        if concatText == "partial" {
            concat = .partial
        } else if concatText.hasPrefix("final ") {
            concat = .final(concatText.dropFirst(6).split(separator: " ").compactMap(UploadID.init))
        } else {
            concat = .none
        }
        let expires: Double? = row["expires_at"]
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
            storeState: row["store_state"]
        )
    }
}
