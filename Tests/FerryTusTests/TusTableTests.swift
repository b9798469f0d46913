import FerryCore
import FerryProtocol
import FerryTestSupport
import FerryTus
import Testing

/// The tus protocol table, request in and exact answer out, against the tus dialect and the
/// engine over in-memory seams (no sockets). The same rows run over TLS with HTTP/2 and
/// HTTP/1.1 against a live server in `FerryServerTests` (`TusTableLiveTests`).
@Suite("tus 1.0 protocol table")
struct TusTableTests {
    static func harness() -> DialectHarness {
        DialectHarness(engine: DialectHarness.memoryEngine { $0.maxSize = 10 * 1024 * 1024 }) { routes, capabilities in
            [TusDialect(routes: routes, capabilities: capabilities)]
        }
    }

    @Test(arguments: TusProtocolTable.cases)
    func rule(_ rule: TusProtocolCase) async throws {
        let mismatches = try await TusProtocolTable.check(rule, over: Self.harness())
        #expect(mismatches.isEmpty, "\(rule.name): \(mismatches.joined(separator: "; "))")
    }
}
