import FerryCore
import FerryHTTP
import FerryServer
import Testing

@Suite("Configuration file: scenarios, auth, events, and errors that name the line")
struct ConfigFileTests {
    static let sample = """
        # ferry.conf
        [server]
        default-scenario = chat-image
        admin-token = "0123456789abcdef0123"

        [auth]
        hs256-secret = "0123456789abcdef0123456789abcdef"   # 32 bytes
        public-key-file = keys/jwt.pem
        issuer = https://login.example.com
        open-uploads = 100
        open-bytes = 20GiB
        creations-per-minute = 120

        [events]
        retry-base = 500ms
        dead-letter-after = 2h

        [scenario voice]
        max-size = 50MiB
        content-types = audio/mpeg, audio/mp4
        required-metadata = filename
        ttl = 24h
        checksum = required
        pre-finish = http://127.0.0.1:8081/ferry/pre-finish
        callback-timeout = 3s
        webhook-secret = "default secret 1234"
        events = upload.completed
        webhook = http://127.0.0.1:8082/a
        webhook = http://127.0.0.1:8082/b
        webhook-secret = "own secret of b 1234"
        events = upload.created, upload.completed
        webhook-batch = 50

        instant-upload = owner
        instant-upload-ranges = 8
        instant-upload-challenge-ttl = 30s

        [scenario chat-image]
        max-size = 20MB
        content-types = image/*
        anonymous = true
        """

    @Test func parsesTheDocumentedExample() throws {
        var read: [String] = []
        let configuration = try ConfigFile.parse(Self.sample, path: "ferry.conf") { file in
            read.append(file)
            return "PEM"
        }
        #expect(read == ["keys/jwt.pem"])
        #expect(configuration.adminToken == "0123456789abcdef0123")
        #expect(configuration.auth.hs256Secret?.count == 32 && configuration.auth.publicKeysPEM == ["PEM"])
        #expect(configuration.quotas == Quotas(openUploads: 100, openBytes: 20 << 30, creationsPerMinute: 120))
        #expect(configuration.events.retryBase == .milliseconds(500) && configuration.events.deadLetterAfter == .seconds(7200))
        #expect(configuration.scenarios.defaultName == "chat-image")
        let voice = try configuration.scenarios.named("voice")
        #expect(voice.maxSize == 50 << 20 && voice.contentTypes == ["audio/mpeg", "audio/mp4"] && voice.checksumRequired)
        #expect(voice.expiry == .seconds(86_400) && voice.callbackTimeout == .seconds(3) && !voice.allowsAnonymous)
        #expect(
            voice.webhooks == [
                Webhook(url: "http://127.0.0.1:8082/a", secret: "default secret 1234", events: [.completed]),
                Webhook(url: "http://127.0.0.1:8082/b", secret: "own secret of b 1234", events: [.created, .completed], batch: 50),
            ]
        )
        #expect(voice.instantUpload == InstantUploadRules(scope: .owner, ranges: 8, challengeTTL: .seconds(30)))
        let images = try configuration.scenarios.named("chat-image")
        #expect(images.maxSize == 20_000_000 && images.allowsAnonymous && images.allows(contentType: "image/heic"))
        #expect(images.instantUpload == InstantUploadRules(scope: .scenario, ranges: 4, challengeTTL: .seconds(120)), "the defaults")
    }

    @Test func anEmptyFileKeepsTheOpenDefault() throws {
        let configuration = try ConfigFile.parse("# nothing\n", path: "empty.conf") { _ in "" }
        #expect(configuration.scenarios == ScenarioSet.open)
        #expect(configuration.anonymousQuotas == Quotas.anonymousDefault, "each anonymous address has the default limits")
    }

    @Test func anonymousClientsHaveTheirOwnQuotas() throws {
        let text = "[anonymous]\nopen-uploads = 20\nopen-bytes = 1GiB\ncreations-per-minute = 30\nmax-size = 100MiB\n"
        let configuration = try ConfigFile.parse(text, path: "anon.conf") { _ in "" }
        #expect(configuration.anonymousQuotas == Quotas(maxSize: 100 << 20, openUploads: 20, openBytes: 1 << 30, creationsPerMinute: 30))
        let lifted = try ConfigFile.parse("[anonymous]\nopen-uploads = unlimited\n", path: "anon.conf") { _ in "" }
        #expect(lifted.anonymousQuotas == Quotas(), "unlimited lifts the default")
    }

    @Test func tlsNamesTheCertificateAndKeyAsWritten() throws {
        let text = "[server]\nadmin-token = \"0123456789abcdef0123\"\n\n[tls]  # HTTPS\ncertificate = certs/chain.pem\nkey = \"/etc/ferry/key file.pem\"\n"
        let configuration = try ConfigFile.parse(text, path: "ferry.conf") { _ in "" }
        // Relative paths stay as written: `ferry serve` resolves them against the file's folder.
        #expect(configuration.tls == TLSFiles(certificateChain: "certs/chain.pem", privateKey: "/etc/ferry/key file.pem"))
        #expect(try ConfigFile.parse("[server]\n", path: "ferry.conf") { _ in "" }.tls == nil, "no [tls]: plain text")
    }

    @Test(arguments: [
        ("[tls]\ncertificate = chain.pem", 1, "[tls] needs both certificate and key"),
        ("# TLS\n[tls]\nkey = key.pem", 2, "[tls] needs both certificate and key"),
        ("[tls]\ncertificate =\nkey = key.pem", 1, "[tls] needs both certificate and key"),
        ("[tls]", 1, "[tls] needs both certificate and key"),
        ("[tls]\ncertificate = chain.pem\nkey = key.pem\nchain = ca.pem", 4, "unknown key chain in [tls] (certificate, key)"),
        ("[tls]\ncertificate = a.pem\nkey = key.pem\ncertificate = b.pem", 4, "certificate is set twice in [tls]"),
        ("[tls]\ncertificate = chain.pem\nkey = key.pem\n[tls]", 4, "[tls] appears twice"),
        ("[tls main]", 1, "[tls] takes no name"),
        ("[tsl]", 1, "sections are [server], [tls], [auth]"),
    ])
    func tlsErrorsNameTheFileAndLine(_ text: String, _ line: Int, _ reason: String) {
        do {
            _ = try ConfigFile.parse(text, path: "ferry.conf") { _ in "" }
            Issue.record("expected an error at line \(line)")
        } catch {
            #expect(error.setting == "ferry.conf:\(line)", "\(error)")
            #expect(error.message.contains(reason), "\(error)")
        }
    }

    @Test(arguments: [
        ("[scenario voice]\nmax-size = 50 MB\nanonymous = true", 2, "max-size: \"50 MB\" is not a size"),
        ("[scenario voice]\nanonymous = true\nttl = soon", 3, "ttl: \"soon\" is not a duration"),
        ("[scenario Voice]", 1, "a scenario is [scenario NAME]"),
        ("[scenario v]\nanonymous = true\n[scenario v]", 3, "declared twice"),
        ("max-size = 1MiB", 1, "must be inside a section"),
        ("[server]\ncolour = blue", 2, "unknown key colour in [server]"),
        ("[scenario v]\nanonymous = maybe", 2, "anonymous: \"maybe\" is not true or false"),
        ("[scenario v]\nanonymous = true\nwebhook = ftp://x", 3, "is not an http:// or https:// URL"),
        ("[scenario v]\nanonymous = true\nwebhook = http://x/e", 3, "needs a webhook-secret"),
        ("[scenario v]\nanonymous = true\nevents = upload.done", 3, "unknown event upload.done"),
        ("[scenario v]\nanonymous = true\ncontent-types = jpeg", 3, "is not a media type"),
        ("[scenario v]\nmax-size = 1MiB", 1, "needs tokens (anonymous = false) but [auth] configures no key"),
        ("[server]\ndefault-scenario = nope\n[scenario v]\nanonymous = true", 2, "default-scenario names nope"),
        ("[auth]\nhs256-secret = short", 2, "at least 32 bytes"),
        ("[auth]\npublic-key-file = missing.pem", 2, "cannot read missing.pem"),
        ("[scenario v]\nanonymous = true\nanonymous = false", 3, "anonymous is set twice"),
        ("[nonsense]", 1, "unknown section"),
        ("[anonymous]\nopen-uploads = -1", 2, "open-uploads: \"-1\" is not a positive whole number"),
        ("[anonymous]\nopen-bytes = lots", 2, "open-bytes: \"lots\" is not a size"),
        ("[anonymous]\nmax-size = 1MiB\nmax-size = 2MiB", 3, "max-size is set twice"),
        ("[anonymous]\ncolour = blue", 2, "unknown key colour in [anonymous]"),
        ("[scenario v]\nanonymous = true\nwebhook-batch = 0", 3, "webhook-batch: \"0\" is not a positive whole number"),
        ("[scenario v]\nanonymous = true\nwebhook-batch = 5000", 3, "webhook-batch is between 1 and 1000"),
        ("[scenario v]\nanonymous = true\ninstant-upload = everyone", 3, "instant-upload is scenario, owner, deployment, off"),
        ("[scenario v]\nanonymous = true\ninstant-upload-ranges = 17", 3, "instant-upload-ranges is between 1 and 16"),
        ("[scenario v]\nanonymous = true\ninstant-upload-challenge-ttl = 0s", 3, "instant-upload-challenge-ttl: \"0s\" is not a duration"),
        ("[scenario v]\nanonymous = true\ninstant-upload = off\ninstant-upload = owner", 4, "instant-upload is set twice"),
        ("[scenario v]\nanonymous = true\nwebhook = http://x/e\nwebhook-secret = 0123456789abcdef\nwebhook-batch = 2\nwebhook-batch = 3", 6, "webhook-batch is set twice"),
        (
            "[scenario v]\nanonymous = true\nwebhook = http://x/e\nwebhook-secret = 0123456789abcdef\n[scenario w]\nanonymous = true\nwebhook = http://x/e\nwebhook-secret = 0123456789abcdef\nwebhook-batch = 9",
            7, "declared elsewhere with another webhook-batch"
        ),
    ])
    func errorsNameTheFileAndLine(_ text: String, _ line: Int, _ reason: String) {
        do {
            _ = try ConfigFile.parse(text, path: "ferry.conf") { file in
                struct Missing: Error {}
                throw Missing()
            }
            Issue.record("expected an error at line \(line)")
        } catch {
            #expect(error.setting == "ferry.conf:\(line)", "\(error)")
            #expect(error.message.contains(reason), "\(error)")
        }
    }
}
