import FerryTestSupport

/// The request fields the parse and render tests share with the protocol table.
let tus = TusProtocolTable.tus
let octets = TusProtocolTable.octets
