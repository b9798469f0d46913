import FerryCore
import FerryDiskStore
import FerrySQLite
import FerryTestSupport
import Foundation
import NIOPosix
import Testing

/// One implementation of a seam, made fresh and empty for each check.
struct Backend<Subject>: Sendable, CustomStringConvertible {
    let description: String
    let make: @Sendable () throws -> Subject
}

/// Scratch space for the backends that need files; removed when the test process ends.
enum Scratch {
    static let directory = TemporaryDirectory()
    static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        return pool
    }()

    static func path(_ name: String) -> String { "\(directory.path)/\(name)-\(UUID().uuidString)" }
}

/// Every conformance check against every in-process implementation, each its own test case.
@Suite("Seam conformance")
struct ConformanceTests {
    static let stores: [Backend<any ByteStore>] = [
        Backend(description: "memory") { MemoryByteStore() },
        Backend(description: "disk") { try DiskByteStore(configuration: .init(directory: Scratch.path("store")), threadPool: Scratch.pool) },
    ]
    static let catalogs: [Backend<any FullCatalog>] = [
        Backend(description: "memory") { MemoryCatalog() },
        Backend(description: "sqlite") { try SQLiteCatalog(path: Scratch.path("catalog") + ".sqlite") },
    ]
    static let statsStores: [Backend<any StatsStore>] = [
        Backend(description: "memory") { MemoryStatsStore() },
        Backend(description: "sqlite") { try SQLiteCatalog(path: Scratch.path("stats") + ".sqlite") },
    ]

    @Test(arguments: stores, ByteStoreConformance.checks)
    func byteStore(_ backend: Backend<any ByteStore>, _ check: ConformanceCheck<any ByteStore>) async throws {
        try await check.run(backend.make())
    }

    @Test(arguments: catalogs, UploadCatalogConformance.checks)
    func catalog(_ backend: Backend<any FullCatalog>, _ check: ConformanceCheck<any FullCatalog>) async throws {
        try await check.run(backend.make())
    }

    @Test(arguments: statsStores, StatsStoreConformance.checks)
    func statsStore(_ backend: Backend<any StatsStore>, _ check: ConformanceCheck<any StatsStore>) async throws {
        try await check.run(backend.make())
    }

    @Test(arguments: UploadLockerConformance.checks)
    func localLocker(_ check: ConformanceCheck<any UploadLocker>) async throws {
        try await check.run(LocalUploadLocker())
    }

    @Test func sqliteCatalogSurvivesReopen() async throws {
        let path = Scratch.path("reopen") + ".sqlite"
        var record = UploadRecord(id: .random(), length: 5, offset: 3, createdAt: .now)
        do {
            let catalog = try SQLiteCatalog(path: path)
            try await catalog.insert(record)
            record.offset = 4
            try await catalog.update(record, events: [], fence: nil)
        }
        let reopened = try SQLiteCatalog(path: path)
        #expect(try await reopened.get(record.id)?.offset == 4)
    }
}
