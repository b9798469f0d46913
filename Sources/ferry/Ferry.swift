import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

#if canImport(Glibc)
/// glibc's `mallopt` (declared in malloc.h, which the Glibc module does not export).
@_silgen_name("mallopt")
private func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

@main
enum Entry {
    static func main() async {
        #if canImport(Glibc)
        // The client: two malloc arenas instead of one per thread (NIO and file-I/O threads
        // otherwise each keep freed buffers: tens of MiB for a 1 GiB stream). Not for `serve`,
        // whose many I/O threads measured slower and larger with shared arenas.
        if CommandLine.arguments.dropFirst().first.map({ ["put", "get"].contains($0) }) ?? false {
            _ = mallopt(-8, 2)  // M_ARENA_MAX (not exported to Swift)
        }
        #endif
        await Ferry.main()
    }
}

struct Ferry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "Resumable file uploads for mobile networks (tus 1.0).",
        subcommands: [Serve.self, Put.self, Status.self, Get.self, Stats.self, Netem.self]
    )
}
