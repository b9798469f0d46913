import ArgumentParser
import FerryNetem
import Foundation

/// `ferry netem`: put a bad mobile network between a client and a server, by hand.
struct Netem: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a fault-injecting TCP proxy that plays a mobile-network profile.",
        discussion: "Profiles: \(NetworkProfile.names.joined(separator: ", ")). Point a client at --listen; traffic goes to --target."
    )

    @Option(help: "host:port to listen on. (default: 127.0.0.1:9090)")
    var listen: String = "127.0.0.1:9090"

    @Option(help: "host:port of the server. (default: 127.0.0.1:8080)")
    var target: String = "127.0.0.1:8080"

    @Option(help: "The network profile.")
    var profile: String = "vacuum"

    @Option(help: "Seed for the profile's random choices.")
    var seed: UInt64 = 1

    @Option(help: "Multiply every rate (and, unless --rates-only, the byte counts after which connections die) by this factor.")
    var rateScale: Double = 1

    @Flag(help: "With --rate-scale: scale only the rates; connections die after the profile's own byte counts.")
    var ratesOnly = false

    @Option(help: "Stop after this many seconds (0: run until interrupted).")
    var seconds: Double = 0

    @Option(help: "Write the statistics as JSON to this file every second (for scripts).")
    var statsFile: String?

    func run() async throws {
        guard let chosen = NetworkProfile.named(profile, seed: seed) else {
            throw ValidationError("unknown profile \(profile); one of \(NetworkProfile.names.joined(separator: ", "))")
        }
        let (listenHost, listenPort) = try Self.split(listen)
        let (targetHost, targetPort) = try Self.split(target)
        let emulator = NetworkEmulator(
            configuration: .init(
                listenHost: listenHost, listenPort: listenPort, targetHost: targetHost, targetPort: targetPort,
                profile: chosen.scaled(by: rateScale, fates: !ratesOnly), seed: seed
            )
        )
        let port = try await emulator.start()
        say("netem: \(profile) on \(listenHost):\(port) -> \(targetHost):\(targetPort), mean uplink \(Int(chosen.meanRate * rateScale * 8 / 1000)) kbit/s")
        let started = ContinuousClock.now
        var lastPrint = started
        while seconds == 0 || ContinuousClock.now - started < .milliseconds(Int64(seconds * 1000)) {
            try? await Task.sleep(for: .seconds(1))
            let stats = await emulator.statistics
            if let statsFile { write(stats, to: statsFile) }
            if ContinuousClock.now - lastPrint >= .seconds(5) {
                lastPrint = .now
                say("netem: connections \(stats.connections), up \(stats.bytesUp) B, down \(stats.bytesDown) B, resets \(stats.resets), cuts \(stats.cuts), blackholes \(stats.blackholes), handovers \(stats.handovers)")
            }
            if Task.isCancelled { break }
        }
        await emulator.stop()
    }

    func write(_ stats: NetworkEmulator.Statistics, to path: String) {
        let json = """
            {"connections": \(stats.connections), "bytes_up": \(stats.bytesUp), "bytes_down": \(stats.bytesDown), \
            "resets": \(stats.resets), "cuts": \(stats.cuts), "blackholes": \(stats.blackholes), "handovers": \(stats.handovers)}
            """
        try? Data(json.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// One line to standard output, unbuffered (so logs of a background run are complete).
    func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func split(_ text: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
            throw ValidationError("expected host:port, got \(text)")
        }
        return (String(text[..<colon]), port)
    }
}
