import FerryCore
import FerrySQLite
import FerryTestSupport
import Foundation
import Testing

/// A length declared after creation (`Upload-Defer-Length`, then `Upload-Length` on a PATCH)
/// takes `open-bytes` exactly like a creation does: the catalog checks it in the write's own
/// transaction, so concurrent declarations cannot all take the owner's last bytes.
@Suite("Quotas: lengths declared later")
struct DeclaredLengthQuotaTests {
    @Test(arguments: ["memory", "sqlite"])
    func concurrentDeclarationsTakeTheLastBytesOnce(_ kind: String) async throws {
        let (engine, catalog) = try DeferredGrowthQuotaTests.engine(kind, "declared")
        let alice = Principal(subject: "alice")
        var ids: [UploadID] = []
        for _ in 0..<10 { ids.append(try await engine.create(.init(length: nil, principal: alice)).id) }
        let outcomes = await withTaskGroup(of: String.self) { group in
            for id in ids {
                group.addTask {
                    do throws(FerryError) {
                        _ = try await engine.append(
                            id, AppendRequest(offset: 0, contentLength: 0, declaredLength: 30), body: body([]), transport: FakeTransport(), as: alice
                        )
                        return "ok"
                    } catch {
                        return error.code.rawValue
                    }
                }
            }
            var all: [String] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        #expect(outcomes.filter { $0 == "ok" }.count == 3, "30 + 30 + 30 of 100: \(outcomes)")
        #expect(outcomes.allSatisfy { $0 == "ok" || $0 == FerryError.Code.quotaExceeded.rawValue }, "\(outcomes)")
        let usage = try await catalog.usage(of: QuotaKey.subject("alice"), since: nil)
        #expect(usage.openBytes == 90, "refused declarations wrote nothing: \(usage)")
        var declared = 0
        for id in ids where try await catalog.get(id)?.length == 30 { declared += 1 }
        #expect(declared == 3)
    }
}
