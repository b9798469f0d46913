import FerryCore
import Testing

@Suite("OneShot")
struct OneShotTests {
    @Test func theFirstValueWinsAndReachesEveryWaiter() async {
        let shot = OneShot<Int>()
        async let first = shot.value
        async let second = shot.wait()
        #expect(shot.fulfill(1))
        #expect(!shot.fulfill(2))
        #expect(await first == 1)
        #expect(await second == 1)
        #expect(await shot.value == 1 && shot.current == 1)
    }

    @Test func aCancelledWaitEndsWithoutTheValue() async {
        let shot = OneShot<Int>()
        let waiter = Task { await shot.wait() }
        waiter.cancel()
        #expect(await waiter.value == nil)
        #expect(shot.current == nil)
        shot.fulfill(3)
        #expect(await shot.wait() == 3)
    }
}
