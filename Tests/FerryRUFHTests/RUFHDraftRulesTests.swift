import Testing

/// The rules that differ between the drafts, each tested against the text of every version.
@Suite("RUFH: each draft's own rules")
struct RUFHDraftRulesTests {
    @Test(arguments: RUFHVersion.all)
    func anAppendReachingTheLengthWithoutCompleteLeavesTheUploadIncomplete(_ v: RUFHVersion) async throws {
        try await RUFHHarness.with { server in
            // Every draft: "the upload is considered complete only if … Upload-Complete … true";
            // from -06: "The offset could match the length, but the upload can still be incomplete."
            let path = try await server.create(length: 5)
            let append = await server.send("PATCH", path, v.marker + [v.appendType, v.complete(false), ("Upload-Offset", "0")], body: hello)
            #expect(append.status == 204 && append.header("Upload-Offset") == "5" && v.says(append) == false, "\(append.status) \(append.text)")
            #expect(v.says(await server.send("HEAD", path, v.marker)) == false)
            let done = await server.send("PATCH", path, v.marker + [v.appendType, v.complete(true), ("Upload-Offset", "5"), ("Content-Length", "0")])
            #expect(done.status == 200 && v.says(done) == true && done.text.contains(#""length":5"#), "\(done.status) \(done.text)")
            #expect(await server.send("GET", path, []).body == hello)
        }
    }

    @Test(arguments: RUFHVersion.all)
    func headAndDeleteCarryNoUploadFieldsInTheEarlyDrafts(_ v: RUFHVersion) async throws {
        try await RUFHHarness.with { server in
            let path = try await server.create(length: 5)
            let forbidden = (v.interop ?? 99) <= 6
            for method in ["HEAD", "DELETE"] {
                for field in [("Upload-Offset", "0"), v.complete(false)] {
                    let answer = await server.send(method, path, v.marker + [field])
                    if forbidden {
                        #expect(answer.status == 400 && answer.header("Ferry-Error") == "ERR_UNEXPECTED_FIELD", "\(method) \(field.0): \(answer.status)")
                    } else {
                        #expect(answer.status != 400, "\(method) \(field.0): \(answer.status) \(answer.text)")
                    }
                    if answer.status == 204, method == "DELETE" { return }
                }
            }
        }
    }

    @Test(arguments: RUFHVersion.all)
    func getRetrievesTheOffsetOfAnIncompleteUpload(_ v: RUFHVersion) async throws {
        try await RUFHHarness.with { server in
            let path = try await server.create(length: 10)
            _ = await server.send("PATCH", path, v.marker + [v.appendType, v.complete(false), ("Upload-Offset", "0")], body: hello)
            let get = await server.send("GET", path, v.marker)
            #expect(get.status == 204 && get.header("Upload-Offset") == "5" && v.says(get) == false && get.header("Cache-Control") == "no-store")
            #expect((get.header("Upload-Length") == "10") == v.announcesLimits && (get.header("Upload-Limit") != nil) == v.announcesLimits)
            #expect(get.header("Upload-Draft-Interop-Version") == v.interop.map(String.init))
        }
    }

    @Test(arguments: RUFHVersion.all)
    func errorAnswersSayWhetherTheUploadIsComplete(_ v: RUFHVersion) async throws {
        try await RUFHHarness.with { server in
            let path = try await server.create(length: 10)
            _ = await server.send("PATCH", path, v.marker + [v.appendType, v.complete(false), ("Upload-Offset", "0")], body: hello)
            // A mismatch: draft -12 says "409 … and the Upload-Complete header field set to false".
            let mismatch = await server.send("PATCH", path, v.marker + [v.appendType, v.complete(false), ("Upload-Offset", "2")], body: hello)
            #expect(mismatch.status == 409 && mismatch.header("Upload-Offset") == "5" && v.says(mismatch) == false)
            // A length that changes.
            let changed = await server.send("PATCH", path, v.marker + [v.appendType, v.complete(true), ("Upload-Offset", "5")], body: [1])
            #expect(changed.status == 400 && changed.text.contains("#inconsistent-upload-length") && v.says(changed) == false, "\(changed.text)")
            // An overrun invalidates the upload.
            let overrun = await server.send("PATCH", path, v.marker + [v.appendType, v.complete(false), ("Upload-Offset", "5")], body: hello + hello)
            #expect(overrun.status == 400 && v.says(overrun) == false && overrun.text.contains("invalidated"), "\(overrun.text)")
            // On a complete upload: earlier drafts state the upload (complete), -12 the protocol's `?0`.
            let done = try await server.create(length: 5)
            _ = await server.send("PATCH", done, v.marker + [v.appendType, v.complete(true), ("Upload-Offset", "0")], body: hello)
            let late = await server.send("PATCH", done, v.marker + [v.appendType, v.complete(true), ("Upload-Offset", "0")], body: hello)
            #expect(late.status == 400 && v.says(late) == !v.followsNewestText, "\(late.status) \(late.headers)")
        }
    }

    @Test(arguments: RUFHVersion.all)
    func aCreationOverTheLimitNamesTheLimit(_ v: RUFHVersion) async throws {
        try await RUFHHarness.with(maxSize: 100) { server in
            let answer = await server.send("POST", "/files/", v.marker + [v.complete(false), ("Upload-Length", "101")])
            #expect(answer.status == 413 && answer.header("Ferry-Error") == "ERR_MAX_SIZE_EXCEEDED")
            #expect((answer.header("Upload-Limit")?.contains("max-size=100") ?? false) == v.announcesLimits, "\(answer.headers)")
        }
    }
}
