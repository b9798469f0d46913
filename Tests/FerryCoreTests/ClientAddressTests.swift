import FerryCore
import Testing

/// Per-address limits key a client by what it cannot cheaply change: an IPv4 address, or an
/// IPv6 /64 (a subscriber's whole prefix).
@Suite("Client addresses as quota keys")
struct ClientAddressTests {
    @Test(arguments: [
        ("192.0.2.7", "192.0.2.7"),
        (" 192.0.2.7 ", "192.0.2.7"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("[2001:DB8:1:2::9]", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80:0:0:0::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("::1", "0:0:0:0::/64"),
        ("not an address", "not an address"),
        ("", ""),
    ])
    func keys(_ address: String, _ key: String) {
        #expect(ClientAddress.key(address) == key)
    }

    @Test func aForwardedValueThatIsNoAddressStaysSmall() {
        #expect(ClientAddress.key(String(repeating: "é", count: 500)).utf8.count <= 64)
        #expect(QuotaKey.address("2001:db8::1") == QuotaKey.address("2001:db8::2"), "one /64, one quota")
        #expect(QuotaKey.address("2001:db8:0:1::1") != QuotaKey.address("2001:db8::1"))
        #expect(QuotaKey.address("192.0.2.7") != QuotaKey.subject("192.0.2.7"), "a subject never poses as an address")
    }
}
