import FerryClock

/// The clock type every server component stores (FerryClock's `AnyClock`).
public typealias AnyClock = FerryClock.AnyClock
