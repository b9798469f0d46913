extension TusProtocolTable {
    /// Runs one row over `transport`: builds its state, sends its request, and returns every way
    /// the answer differs from the row (empty: it passed). Throws `ConformanceFailure` when the
    /// state cannot be built, and whatever the transport throws.
    public static func check(_ rule: TusProtocolCase, over transport: some TableTransport) async throws -> [String] {
        let (path, concat) = try await prepare(rule.setup, transport)
        let target: String
        switch rule.target {
        case .collection: target = "/files/"
        case .upload: target = path ?? "/files/"
        case .unknownUpload: target = "/files/\(String(repeating: "ab", count: 16))"
        case .path(let custom): target = custom
        }
        let answer = try await transport.send(rule.method, target, rule.headers, body: rule.body)
        var mismatches: [String] = []
        if answer.status != rule.status { mismatches.append("status \(answer.status), expected \(rule.status): \(answer.text)") }
        for (name, value) in rule.expect {
            let actual = answer.header(name)
            switch value {
            case "*":
                if actual == nil { mismatches.append("\(name) missing") }
            case "$concat":
                if actual != concat { mismatches.append("\(name) is \(actual ?? "absent"), expected \(concat ?? "nil")") }
            default:
                if actual != value { mismatches.append("\(name) is \(actual ?? "absent"), expected \(value)") }
            }
        }
        for name in rule.absent where answer.header(name) != nil {
            mismatches.append("\(name) must be absent, is \(answer.header(name) ?? "")")
        }
        if answer.header("Tus-Resumable") != "1.0.0" { mismatches.append("Tus-Resumable is \(answer.header("Tus-Resumable") ?? "absent")") }
        if let expected = rule.offsetAfter, let path {
            let head = try await transport.send("HEAD", path, [tus])
            if head.header("Upload-Offset") != String(expected) {
                mismatches.append("offset after is \(head.header("Upload-Offset") ?? "absent"), expected \(expected)")
            }
        }
        return mismatches
    }

    /// Builds the state a case starts from; returns the upload's path (and a final's `Upload-Concat`).
    static func prepare(_ setup: TusProtocolCase.Setup, _ transport: some TableTransport) async throws -> (String?, String?) {
        switch setup {
        case .none:
            return (nil, nil)
        case .upload(let length, let sent, let metadata, let partial):
            var extra: [(String, String)] = []
            if let metadata { extra.append(("Upload-Metadata", metadata)) }
            if partial { extra.append(("Upload-Concat", "partial")) }
            let created = try await create(transport, length: length, extra)
            if sent > 0 { try await patch(transport, created.path, offset: 0, Array(repeating: 0x61, count: sent)) }
            return (created.path, nil)
        case .final(let lengths):
            var parts: [Created] = []
            for length in lengths {
                let part = try await create(transport, length: length, [("Upload-Concat", "partial")])
                try await patch(transport, part.path, offset: 0, Array(repeating: 0x62, count: length))
                parts.append(part)
            }
            // One part by path, the others by the absolute URL the server gave: HEAD echoes the field as sent.
            let concat = "final;" + parts.enumerated().map { $0.offset == 0 ? $0.element.path : $0.element.location }.joined(separator: " ")
            return (try await createFinal(transport, concat), concat)
        case .unfinishedFinal:
            let done = try await create(transport, length: 2, [("Upload-Concat", "partial")])
            try await patch(transport, done.path, offset: 0, [1, 2])
            let waiting = try await create(transport, length: 2, [("Upload-Concat", "partial")])
            let concat = "final;\(done.path) \(waiting.path)"
            return (try await createFinal(transport, concat), concat)
        case .terminated:
            let created = try await create(transport, length: 10)
            let answer = try await transport.send("DELETE", created.path, [tus])
            try require(answer.status == 204, "setup: DELETE answered \(answer.status) \(answer.text)")
            return (created.path, nil)
        }
    }

    struct Created {
        /// `Location` as the server sent it.
        var location: String
        /// Its path, `/files/<id>`.
        var path: String
    }

    static func create(_ transport: some TableTransport, length: Int?, _ extra: [(String, String)] = []) async throws -> Created {
        let lengthField = length.map { ("Upload-Length", String($0)) } ?? ("Upload-Defer-Length", "1")
        let answer = try await transport.send("POST", "/files/", [tus, lengthField] + extra)
        return try created(answer)
    }

    static func patch(_ transport: some TableTransport, _ path: String, offset: Int, _ body: [UInt8]) async throws {
        let answer = try await transport.send("PATCH", path, [tus, octets, ("Upload-Offset", String(offset))], body: body)
        try require(answer.status == 204, "setup: PATCH answered \(answer.status) \(answer.text)")
    }

    static func createFinal(_ transport: some TableTransport, _ concat: String) async throws -> String {
        let answer = try await transport.send("POST", "/files/", [tus, ("Upload-Concat", concat)])
        return try created(answer).path
    }

    static func created(_ answer: TableAnswer) throws -> Created {
        let location = answer.header("Location")
        guard answer.status == 201, let location, let path = path(of: location) else {
            throw ConformanceFailure(message: "setup: POST answered \(answer.status) \(answer.text)", file: #fileID, line: #line)
        }
        return Created(location: location, path: path)
    }

    /// The path of an upload URL, from `/files/` on.
    public static func path(of location: String) -> String? {
        guard let range = location.range(of: "/files/") else { return nil }
        return String(location[range.lowerBound...])
    }
}
