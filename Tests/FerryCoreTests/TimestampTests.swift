import FerryCore
import Foundation
import Testing

@Suite("Timestamps in payloads")
struct TimestampTests {
    @Test func timestampsReadAsFoundationWritesThem() {
        let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        var generator = SystemRandomNumberGenerator()
        var intervals: [Double] = [0, 0.0005, 0.9995, 0.9999, 1.5, 951_782_400, 951_868_799.999, 4_107_542_400, 1_765_063_789.1234, 253_402_300_799.5]
        intervals += (0..<2000).map { _ in Double.random(in: 0..<4_200_000_000, using: &generator) }
        intervals += [-0.5, -1.0005, -62_135_596_800, 253_402_300_800, 1e15]  // left to Foundation
        for interval in intervals {
            let date = Date(timeIntervalSince1970: interval)
            #expect(Timestamp.millisecondsUTC(date) == date.formatted(style), "\(interval)")
        }
    }
}
