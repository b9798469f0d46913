extension Duration {
    /// The duration in seconds, for `Date` arithmetic.
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
