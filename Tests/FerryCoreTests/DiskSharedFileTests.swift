import FerryCore
@testable import FerryDiskStore
import Foundation
import NIOCore
import Testing

/// A file two uploads share (a hard link from a concatenation or an instant upload) is never
/// cut or written through the name of the one still receiving bytes.
@Suite("Disk store: shared files are never written in place")
struct DiskSharedFileTests {
    func store() throws -> DiskByteStore {
        try DiskByteStore(configuration: .init(directory: Scratch.path("shared")), threadPool: Scratch.pool)
    }

    func bytes(_ store: DiskByteStore, _ record: UploadRecord) async throws -> [UInt8] {
        var read: [UInt8] = []
        try await store.read(record, range: 0..<record.offset) { buffer in read += buffer.readableBytesView }
        return read
    }

    func links(_ store: DiskByteStore, _ id: UploadID) -> Int {
        var info = stat()
        return stat(store.path(id), &info) == 0 ? Int(info.st_nlink) : 0
    }

    /// The crash window of an instant upload: the new upload's name links the holder's file but
    /// its record still says offset 0 (or a concatenation final linked to its partial). Writing
    /// from any offset gives the upload a file of its own and leaves the holder's bytes alone.
    @Test(arguments: [Int64(0), 4, 10])
    func anAppendToASharedFileLeavesTheOtherNameWhole(offset: Int64) async throws {
        let store = try store()
        let content = Array("0123456789".utf8)
        let holder = UploadRecord(id: .random(), length: 10, offset: 10, state: .complete, createdAt: .now)
        try await store.create(for: holder)
        let writer = try await store.openWriter(for: UploadRecord(id: holder.id, length: 10, createdAt: .now), fence: nil)
        try await writer.write(ByteBuffer(bytes: content))
        _ = try await writer.sync()
        await writer.close()
        var sharer = UploadRecord(id: .random(), length: 20, offset: 0, createdAt: .now)
        try await store.create(for: sharer)
        _ = try await store.reference(holder, into: sharer, fence: nil)
        #expect(links(store, holder.id) == 2, "the two names share one file")

        sharer.offset = offset
        let appending = try await store.openWriter(for: sharer, fence: nil)
        try await appending.write(ByteBuffer(bytes: Array("abcdefghij".utf8)))
        let end = try await appending.sync()
        await appending.close()
        #expect(end == offset + 10)
        #expect(links(store, holder.id) == 1 && links(store, sharer.id) == 1, "the appending upload has a file of its own")
        #expect(try await bytes(store, holder) == content, "the holder's bytes are untouched")
        sharer.offset = end
        #expect(try await bytes(store, sharer) == Array(content.prefix(Int(offset))) + Array("abcdefghij".utf8))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: (store.path(holder.id) as NSString).deletingLastPathComponent)
            .filter { $0.contains(".") }
        #expect(leftovers.isEmpty, "no temporary name is left: \(leftovers)")
    }

    /// A temporary name a crash left (between a link or a copy and its rename) is swept once
    /// it is older than the cutoff; uploads' files, fresh temporaries and other names stay.
    @Test func leftoverTemporariesAreSwept() async throws {
        let store = try store()
        let upload = UploadRecord(id: .random(), length: 10, createdAt: .now)
        try await store.create(for: upload)
        let folder = (store.path(upload.id) as NSString).deletingLastPathComponent
        let old = ["\(UploadID.random().rawValue).link", "\(upload.id.rawValue).own"]
        let kept = ["\(UploadID.random().rawValue).own", "notes.own", "\(upload.id.rawValue)"]
        for name in old + kept.dropLast() {
            #expect(FileManager.default.createFile(atPath: "\(folder)/\(name)", contents: Data([1])))
        }
        for name in old {
            var times = [timeval(tv_sec: 1_000_000_000, tv_usec: 0), timeval(tv_sec: 1_000_000_000, tv_usec: 0)]
            #expect(utimes("\(folder)/\(name)", &times) == 0)
        }
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 1_000_000_000)], ofItemAtPath: "\(folder)/notes.own")
        #expect(try await store.sweepLeftovers(before: Date().addingTimeInterval(-60)) == 2)
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: folder))
        #expect(left == Set(kept), "\(left)")
    }

    /// Scenario folders: a reference within one folder is a link; one from another scenario's
    /// folder is refused; the leftover sweep visits every folder.
    @Test func scenarioFoldersReferenceWithinOneFolderAndSweepEveryFolder() async throws {
        let fallback = try store()
        let voice = try store()
        let routed = ScenarioRoutedStore(default: fallback, routes: ["voice": voice])
        var holder = UploadRecord(id: .random(), length: 3, offset: 0, createdAt: .now, scenario: "voice")
        try await routed.create(for: holder)
        let writer = try await routed.openWriter(for: holder, fence: nil)
        try await writer.write(ByteBuffer(bytes: [1, 2, 3]))
        holder.offset = try await writer.sync()
        await writer.close()
        holder.state = .complete
        let sameFolder = UploadRecord(id: .random(), length: 3, createdAt: .now, scenario: "voice")
        try await routed.create(for: sameFolder)
        _ = try await routed.reference(holder, into: sameFolder, fence: nil)
        #expect(links(voice, holder.id) == 2)
        let otherFolder = UploadRecord(id: .random(), length: 3, createdAt: .now, scenario: "chat")
        try await routed.create(for: otherFolder)
        let refused = await #expect(throws: FerryError.self) { _ = try await routed.reference(holder, into: otherFolder, fence: nil) }
        #expect(refused?.code == .storageFailure)
        for folder in [fallback, voice] {
            let path = (folder.path(holder.id) as NSString).deletingLastPathComponent + "/\(UploadID.random().rawValue).own"
            #expect(FileManager.default.createFile(atPath: path, contents: Data([1])))
        }
        #expect(try await routed.sweepLeftovers(before: Date().addingTimeInterval(60)) == 2)
    }
}
