/// Anything that carries command APDUs to a card and brings back the raw answer
/// (data followed by SW1 SW2). PC/SC is one; tests use an in-memory fake.
public protocol CardTransport: AnyObject {
    func transmit(_ apdu: [UInt8]) throws(CardError) -> [UInt8]
}

/// An ISO 7816-4 command APDU.
public struct CommandAPDU: Sendable, Equatable {
    public var cla: UInt8
    public var ins: UInt8
    public var p1: UInt8
    public var p2: UInt8
    public var data: [UInt8]
    /// Expected response length; nil for none, 0 for "as much as there is" (256 / 65536).
    public var le: Int?

    public init(cla: UInt8 = 0x00, ins: UInt8, p1: UInt8 = 0, p2: UInt8 = 0, data: [UInt8] = [], le: Int? = nil) {
        self.cla = cla
        self.ins = ins
        self.p1 = p1
        self.p2 = p2
        self.data = data
        self.le = le
    }

    /// Whether the command needs the extended length form (ISO 7816-4 §5.1).
    public var isExtended: Bool { data.count > 255 || (le ?? 0) > 256 }

    /// The bytes on the wire: short form when it fits, else extended.
    public var encoded: [UInt8] {
        var out = [cla, ins, p1, p2]
        if isExtended {
            out.append(0x00)
            if !data.isEmpty {
                out += [UInt8(truncatingIfNeeded: data.count >> 8), UInt8(truncatingIfNeeded: data.count)]
                out += data
            }
            if let le {
                let v = le >= 65536 ? 0 : le
                out += [UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
            }
        } else {
            if !data.isEmpty {
                out.append(UInt8(data.count))
                out += data
            }
            if let le { out.append(UInt8(truncatingIfNeeded: le >= 256 ? 0 : le)) }
        }
        return out
    }

    /// Parses a command as a card receives it (the four ISO 7816-3 cases, short and
    /// extended). Returns nil, never traps, on a length that does not add up.
    public static func parse(_ bytes: [UInt8]) -> CommandAPDU? {
        guard bytes.count >= 4 else { return nil }
        var apdu = CommandAPDU(cla: bytes[0], ins: bytes[1], p1: bytes[2], p2: bytes[3])
        let body = Array(bytes[4...])
        switch body.count {
        case 0:
            return apdu
        case 1:
            apdu.le = body[0] == 0 ? 256 : Int(body[0])
            return apdu
        default:
            if body[0] != 0 {
                let lc = Int(body[0])
                guard body.count == 1 + lc || body.count == 2 + lc else { return nil }
                apdu.data = Array(body[1..<(1 + lc)])
                if body.count == 2 + lc { apdu.le = body[1 + lc] == 0 ? 256 : Int(body[1 + lc]) }
                return apdu
            }
            // Extended: 00 then Lc (2 bytes) and data, and/or Le (2 bytes).
            if body.count == 3 {
                let le = Int(body[1]) << 8 | Int(body[2])
                apdu.le = le == 0 ? 65536 : le
                return apdu
            }
            guard body.count >= 3 else { return nil }
            let lc = Int(body[1]) << 8 | Int(body[2])
            guard lc > 0, body.count == 3 + lc || body.count == 5 + lc else { return nil }
            apdu.data = Array(body[3..<(3 + lc)])
            if body.count == 5 + lc {
                let le = Int(body[3 + lc]) << 8 | Int(body[4 + lc])
                apdu.le = le == 0 ? 65536 : le
            }
            return apdu
        }
    }
}

/// A response APDU: data and the status word.
public struct ResponseAPDU: Sendable, Equatable {
    public var data: [UInt8]
    public var sw: UInt16

    public init(data: [UInt8], sw: UInt16) {
        self.data = data
        self.sw = sw
    }

    /// Splits a raw answer; nil when it is shorter than the two status bytes.
    public init?(raw: [UInt8]) {
        guard raw.count >= 2 else { return nil }
        data = Array(raw.dropLast(2))
        sw = UInt16(raw[raw.count - 2]) << 8 | UInt16(raw[raw.count - 1])
    }

    public var encoded: [UInt8] { data + [UInt8(sw >> 8), UInt8(sw & 0xFF)] }
    public var sw1: UInt8 { UInt8(sw >> 8) }
}

/// ISO 7816-4 on top of a transport: sends commands and follows 61xx response chaining
/// with a caller-chosen "send remaining" instruction (GET RESPONSE is 0xC0; YKOATH uses 0xA5).
public final class APDUConnection {
    public let transport: CardTransport
    public let sendRemainingInstruction: UInt8
    /// Upper bound on chained answers, so that a card that says 61xx forever cannot hang us.
    public static let maxChainedResponses = 64
    /// Count of APDUs exchanged, for benchmarks.
    public private(set) var exchanged = 0

    public init(transport: CardTransport, sendRemainingInstruction: UInt8 = 0xC0) {
        self.transport = transport
        self.sendRemainingInstruction = sendRemainingInstruction
    }

    /// Sends `command`; returns the full (chained) answer whatever its status word.
    public func send(_ command: CommandAPDU) throws(CardError) -> ResponseAPDU {
        var response = try exchange(command.encoded)
        var data = response.data
        var rounds = 0
        while response.sw1 == 0x61 {
            rounds += 1
            guard rounds <= Self.maxChainedResponses else { throw .malformedResponse("endless response chaining") }
            response = try exchange(CommandAPDU(ins: sendRemainingInstruction, le: 0).encoded)
            data += response.data
        }
        return ResponseAPDU(data: data, sw: response.sw)
    }

    /// Sends `command` and requires 9000; other status words become `CardError.status`.
    public func sendChecked(_ command: CommandAPDU) throws(CardError) -> [UInt8] {
        let r = try send(command)
        guard r.sw == StatusWord.success else { throw .status(r.sw) }
        return r.data
    }

    private func exchange(_ bytes: [UInt8]) throws(CardError) -> ResponseAPDU {
        exchanged += 1
        let raw = try transport.transmit(bytes)
        guard let r = ResponseAPDU(raw: raw) else { throw .malformedResponse("answer shorter than a status word") }
        return r
    }
}
