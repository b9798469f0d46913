import Foundation
import Testing

@Suite("Operations: metrics, health, CORS, shutdown")
struct OperationsTests {
    @Test func metricsAndHealth() async throws {
        try await TestServer.with { server in
            let path = try await server.create(length: 5)
            let connection = try await server.connect()
            _ = try await connection.exchange("PATCH", path, [tus, octets, ("Upload-Offset", "0")], body: hello)
            _ = try await connection.exchange("PATCH", path, [tus, octets, ("Upload-Offset", "1")], body: hello)
            #expect(try await connection.exchange("GET", "/healthz").status == 200)
            let metrics = try await connection.exchange("GET", "/metrics")
            await connection.close()
            #expect(metrics.status == 200)
            let text = metrics.text
            for expected in [
                "ferry_http_requests_total{route=\"/files/:id\",method=\"PATCH\",status=\"204\"} 1",
                "ferry_http_requests_total{route=\"/files/:id\",method=\"PATCH\",status=\"409\"} 1",
                "ferry_http_requests_total{route=\"/files/\",method=\"POST\",status=\"201\"} 1",
                "ferry_http_request_duration_seconds_count{route=\"/files/:id\",method=\"PATCH\"} 2",
                "ferry_uploads_active{store=\"disk\"} 0",
                "ferry_errors_total{code=\"ERR_OFFSET_MISMATCH\"} 1",
                "ferry_uploads_created_total{store=\"disk\"} 1",
                "ferry_uploads_completed_total{store=\"disk\"} 1",
                "ferry_bytes_received_total{store=\"disk\"} 5",
            ] {
                #expect(text.contains(expected), "missing \(expected)")
            }
        }
    }

    @Test func corsIsOffByDefaultAndConfigurable() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let plain = try await connection.exchange("OPTIONS", "/files/", [("Origin", "https://app.example")])
            #expect(plain.header("Access-Control-Allow-Origin") == nil)
            await connection.close()
        }
        try await TestServer.with(configure: { $0.http.cors.allowedOrigins = ["https://app.example"] }) { server in
            let connection = try await server.connect()
            let preflight = try await connection.exchange(
                "OPTIONS", "/files/",
                [("Origin", "https://app.example"), ("Access-Control-Request-Method", "PATCH"), ("Access-Control-Request-Headers", "upload-offset")]
            )
            #expect(preflight.status == 204)
            #expect(preflight.header("Access-Control-Allow-Origin") == "https://app.example")
            #expect(preflight.header("Access-Control-Allow-Headers")?.contains("Upload-Offset") == true)
            let created = try await connection.exchange("POST", "/files/", [tus, ("Upload-Length", "1"), ("Origin", "https://app.example")])
            #expect(created.header("Access-Control-Expose-Headers")?.contains("Location") == true)
            let other = try await connection.exchange("POST", "/files/", [tus, ("Upload-Length", "1"), ("Origin", "https://evil.example")])
            #expect(other.header("Access-Control-Allow-Origin") == nil)
            await connection.close()
        }
    }

    @Test func gracefulShutdownSavesInFlightPatches() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-shutdown-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var path = ""
        try await TestServer.with(configure: { $0.dataDirectory = directory }) { server in
            path = try await server.create(length: 100)
            let slow = try await server.connect()
            try await slow.request("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Content-Length", "100")])
            try await slow.send(Array(repeating: 9, count: 33))
            try await Task.sleep(for: .milliseconds(200))
            // Leaving `with` triggers graceful shutdown while this PATCH is still open.
        }
        // Restart on the same data: the 33 bytes were saved.
        try await TestServer.with(configure: { $0.dataDirectory = directory }) { server in
            let offset = try await server.offset(path)
            #expect(offset == 33)
        }
    }
}
