// libFuzzer target: everything that parses bytes from a card or a reader — BER-TLV,
// command and response APDUs, the YKOATH session's answers, and the virtual card's applet.
import OTPCore
import SmartCard
import VirtualCard

/// A card that answers every command with the fuzzer's bytes, cut into pieces.
final class FuzzTransport: CardTransport {
    var data: [UInt8]
    init(_ data: [UInt8]) { self.data = data }
    func transmit(_ apdu: [UInt8]) throws(CardError) -> [UInt8] {
        guard !data.isEmpty else { throw .cardRemoved }
        let n = min(Int(data[0]) + 2, data.count)
        defer { data.removeFirst(n) }
        return Array(data[0..<n])
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: start, count: count))
    _ = TLV.parseAll(bytes)
    _ = CommandAPDU.parse(bytes)
    _ = ResponseAPDU(raw: bytes)
    let session = OATHSession(transport: FuzzTransport(bytes))
    _ = try? session.select()
    _ = try? session.list()
    _ = try? session.calculate(name: "a", challenge: [1, 2, 3, 4, 5, 6, 7, 8], truncated: bytes.count % 2 == 0)
    _ = try? session.calculateAll(challenge: [1])
    let applet = OATHApplet(salt: [1, 2, 3, 4, 5, 6, 7, 8]) { [UInt8](repeating: 7, count: $0) }
    _ = applet.process([0x00, 0xA4, 0x04, 0x00, 0x07] + YKOATH.aid)
    var i = 0
    while i < bytes.count {
        let n = min(Int(bytes[i]) % 64 + 1, bytes.count - i)
        _ = applet.process(Array(bytes[i..<(i + n)]))
        i += n
    }
    return 0
}
