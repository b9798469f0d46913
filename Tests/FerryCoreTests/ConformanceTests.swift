import FerryCore
import FerryDiskStore
import FerrySQLite
import FerryTestSupport
import NIOPosix
import Testing

@Suite("Seam conformance")
struct ConformanceTests {
    @Test func memoryByteStore() async throws {
        try await ByteStoreConformance.run { MemoryByteStore() }
    }

    @Test func diskByteStore() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        var count = 0
        try await ByteStoreConformance.run {
            count += 1
            return try DiskByteStore(configuration: .init(directory: "\(directory.path)/store\(count)"), threadPool: pool)
        }
        try await pool.shutdownGracefully()
    }

    @Test func memoryCatalog() async throws {
        try await UploadCatalogConformance.run { MemoryCatalog() }
    }

    @Test func sqliteCatalog() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        var count = 0
        try await UploadCatalogConformance.run {
            count += 1
            return try SQLiteCatalog(path: "\(directory.path)/catalog\(count).sqlite")
        }
    }

    @Test func sqliteCatalogSurvivesReopen() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let path = "\(directory.path)/catalog.sqlite"
        var record = UploadRecord(id: .random(), length: 5, offset: 3, createdAt: .now)
        do {
            let catalog = try SQLiteCatalog(path: path)
            try await catalog.insert(record)
            record.offset = 4
            try await catalog.update(record)
        }
        let reopened = try SQLiteCatalog(path: path)
        #expect(try await reopened.get(record.id)?.offset == 4)
    }

    @Test func localLocker() async throws {
        try await UploadLockerConformance.run { LocalUploadLocker() }
    }
}
