#if canImport(Network)
import Network

/// On Apple platforms: tells an upload when the device changes network (Wi-Fi ↔ cellular),
/// so it drops connections and measurements and starts from that network's defaults.
public final class NetworkPathObserver: @unchecked Sendable {
    // @unchecked Sendable: NWPathMonitor is thread-safe; `last` is only touched on `queue`.
    private let monitor = NWPathMonitor()
    private let queue = DispatchQueue(label: "ferry.network-path")
    private var last: NetworkKind?

    public init(upload: Upload) {
        monitor.pathUpdateHandler = { [weak self] path in
            guard let self, path.status == .satisfied else { return }
            let kind: NetworkKind =
                path.usesInterfaceType(.wifi) ? .wifi
                : path.usesInterfaceType(.cellular) ? .cellular
                : path.usesInterfaceType(.wiredEthernet) ? .wired : .unknown
            if let last = self.last, last != kind { upload.networkChanged(to: kind) }
            self.last = kind
        }
        monitor.start(queue: queue)
    }

    deinit { monitor.cancel() }
}
#endif
