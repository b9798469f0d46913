import ArgumentParser

@main
struct Ferry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "Resumable file uploads for mobile networks (tus 1.0).",
        subcommands: [Serve.self, Put.self, Status.self, Get.self, Netem.self]
    )
}
