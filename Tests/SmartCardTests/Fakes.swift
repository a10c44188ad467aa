import Foundation
import SmartCard
import VirtualCard

/// A transport that plays back a recorded exchange and fails on any deviation.
final class RecordedTransport: CardTransport {
    var script: [(command: [UInt8], response: [UInt8])]
    var sent: [[UInt8]] = []

    init(_ script: [(String, String)]) {
        self.script = script.map { (hex($0.0), hex($0.1)) }
    }

    func transmit(_ apdu: [UInt8]) throws(CardError) -> [UInt8] {
        sent.append(apdu)
        guard !script.isEmpty else { throw .unresponsiveCard }
        let next = script.removeFirst()
        guard next.command == apdu else { throw .malformedResponse("unexpected command \(hexString(apdu)), wanted \(hexString(next.command))") }
        return next.response
    }
}

/// A transport that hands commands to the virtual card's applet in memory.
final class AppletTransport: CardTransport {
    let applet: OATHApplet
    var log: [([UInt8], [UInt8])] = []
    var failAfter: Int?

    init(_ applet: OATHApplet) { self.applet = applet }

    func transmit(_ apdu: [UInt8]) throws(CardError) -> [UInt8] {
        if let n = failAfter {
            if n <= 0 { throw .cardRemoved }
            failAfter = n - 1
        }
        let r = applet.process(apdu)
        log.append((apdu, r))
        return r
    }
}

/// A transport that answers whatever bytes a test gives it.
final class GarbageTransport: CardTransport {
    var answer: () -> [UInt8]
    init(_ answer: @escaping () -> [UInt8]) { self.answer = answer }
    func transmit(_ apdu: [UInt8]) throws(CardError) -> [UInt8] { answer() }
}

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var chars = Array(s.filter { !$0.isWhitespace })
    while chars.count >= 2 {
        out.append(UInt8(String(chars[0...1]), radix: 16) ?? 0)
        chars.removeFirst(2)
    }
    return out
}

func hexString(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }
