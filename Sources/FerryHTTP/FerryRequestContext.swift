import Hummingbird
import NIOCore

/// Hummingbird request context that keeps the connection's channel, so the adapter can
/// reach its `BodyChannelHandler`.
public struct FerryRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}
