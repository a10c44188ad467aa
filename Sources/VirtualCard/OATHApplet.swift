import OTPCore
import SmartCard

/// The card side of YKOATH: what a YubiKey's OATH applet does, as a pure state machine
/// (`process(apdu) -> response`). `smartotp-card` plugs it into vpcd; tests call it
/// directly. It must answer garbage with a status word, never trap.
public final class OATHApplet {
    /// One stored credential.
    public struct Credential: Sendable {
        public var name: [UInt8]
        public var typeAlgorithm: UInt8
        public var digits: UInt8
        public var key: [UInt8]
        public var touch: Bool
        public var counter: UInt32

        var algorithm: HashAlgorithm? { HashAlgorithm(rawValue: typeAlgorithm & 0x0F) }
        var isHOTP: Bool { typeAlgorithm & 0xF0 == YKOATH.typeHOTP }
    }

    /// Version this applet reports (that of a current YubiKey 5 firmware).
    public static let version: [UInt8] = [5, 4, 3]
    public static let maxCredentials = 32
    /// Largest answer sent at once; more goes out by 61xx chaining, as a YubiKey does.
    static let maxChunk = 255

    public private(set) var salt: [UInt8]
    public private(set) var accessKey: [UInt8]?
    public private(set) var credentials: [Credential] = []
    /// Set when a command changed what must be persisted.
    public var isDirty = false
    /// Called for a touch-required credential: true when the user touched in time.
    public var touchProvider: () -> Bool = { false }
    /// Random source (tests may make it deterministic).
    public var random: (Int) -> [UInt8]

    private var selected = false
    private var authenticated = true
    private var pendingChallenge: [UInt8]?
    private var pendingResponse: [UInt8] = []

    public init(salt: [UInt8]? = nil, random: @escaping (Int) -> [UInt8] = { SecureRandom.bytes($0) ?? [UInt8](repeating: 0, count: $0) }) {
        self.random = random
        self.salt = salt ?? random(8)
    }

    /// Power-on / reset: a fresh session, nothing selected.
    public func reset() {
        selected = false
        authenticated = accessKey == nil
        pendingResponse = []
        pendingChallenge = nil
    }

    /// Processes one command APDU and returns data + SW.
    public func process(_ raw: [UInt8]) -> [UInt8] {
        guard let apdu = CommandAPDU.parse(raw) else { return sw(StatusWord.wrongLength) }
        if apdu.cla & 0x80 != 0 { return sw(StatusWord.classNotSupported) }
        if apdu.ins == YKOATH.Instruction.sendRemaining { return sendRemaining() }
        pendingResponse = []
        if apdu.ins == YKOATH.Instruction.select && apdu.p1 == 0x04 { return select(apdu) }
        guard selected else { return sw(StatusWord.instructionNotSupported) }
        switch apdu.ins {
        case YKOATH.Instruction.validate: return validate(apdu)
        case YKOATH.Instruction.reset: return resetApplet(apdu)
        default: break
        }
        guard authenticated else { return sw(StatusWord.securityStatusNotSatisfied) }
        switch apdu.ins {
        case YKOATH.Instruction.put: return put(apdu)
        case YKOATH.Instruction.delete: return delete(apdu)
        case YKOATH.Instruction.setCode: return setCode(apdu)
        case YKOATH.Instruction.list: return list()
        case YKOATH.Instruction.calculate: return calculate(apdu)
        case YKOATH.Instruction.calculateAll: return calculateAll(apdu)
        default: return sw(StatusWord.instructionNotSupported)
        }
    }

    // MARK: - Commands

    private func select(_ apdu: CommandAPDU) -> [UInt8] {
        guard apdu.data.count >= YKOATH.aid.count, Array(apdu.data.prefix(YKOATH.aid.count)) == YKOATH.aid else {
            selected = false
            return sw(StatusWord.fileNotFound)
        }
        selected = true
        authenticated = accessKey == nil
        var tlvs = [TLV(YKOATH.Tag.version, Self.version), TLV(YKOATH.Tag.name, salt)]
        if accessKey != nil {
            let challenge = random(8)
            pendingChallenge = challenge
            tlvs.append(TLV(YKOATH.Tag.challenge, challenge))
            tlvs.append(TLV(YKOATH.Tag.algorithm, [HashAlgorithm.sha1.rawValue]))
        }
        return respond(tlvs.encoded)
    }

    private func validate(_ apdu: CommandAPDU) -> [UInt8] {
        guard let key = accessKey, let challenge = pendingChallenge else { return sw(StatusWord.conditionsNotSatisfied) }
        guard let tlvs = TLV.parseAll(apdu.data), let response = tlvs.first(tag: YKOATH.Tag.response),
              let hostChallenge = tlvs.first(tag: YKOATH.Tag.challenge) else {
            return sw(StatusWord.incorrectData)
        }
        pendingChallenge = nil  // one try per SELECT
        guard ConstantTime.equals(HMAC.authenticate(.sha1, key: key, message: challenge), response) else {
            return sw(StatusWord.incorrectData)
        }
        authenticated = true
        return respond(TLV(YKOATH.Tag.response, HMAC.authenticate(.sha1, key: key, message: hostChallenge)).encoded)
    }

    private func resetApplet(_ apdu: CommandAPDU) -> [UInt8] {
        guard apdu.p1 == YKOATH.resetP1, apdu.p2 == YKOATH.resetP2 else { return sw(StatusWord.incorrectP1P2) }
        credentials = []
        accessKey = nil
        salt = random(8)
        authenticated = true
        isDirty = true
        return sw(StatusWord.success)
    }

    private func put(_ apdu: CommandAPDU) -> [UInt8] {
        // PUT's data is TLVs, except the property, written as tag + value without length.
        var name: [UInt8]?
        var key: [UInt8]?
        var touch = false
        var counter: UInt32 = 0
        var i = 0
        let d = apdu.data
        while i < d.count {
            if d[i] == YKOATH.Tag.property {
                guard i + 1 < d.count else { return sw(StatusWord.incorrectData) }
                touch = d[i + 1] & YKOATH.propertyRequireTouch != 0
                i += 2
                continue
            }
            guard let (tlv, next) = TLV.parse(d, at: i) else { return sw(StatusWord.incorrectData) }
            switch tlv.tag {
            case YKOATH.Tag.name: name = tlv.value
            case YKOATH.Tag.key: key = tlv.value
            case YKOATH.Tag.imf:
                guard tlv.value.count == 4 else { return sw(StatusWord.incorrectData) }
                counter = tlv.value.reduce(0) { $0 << 8 | UInt32($1) }
            default: return sw(StatusWord.incorrectData)
            }
            i = next
        }
        guard let name, !name.isEmpty, name.count <= 64, let key, key.count >= 2 else { return sw(StatusWord.incorrectData) }
        let typeAlgorithm = key[0]
        let digits = key[1]
        let type = typeAlgorithm & 0xF0
        guard type == YKOATH.typeHOTP || type == YKOATH.typeTOTP, HashAlgorithm(rawValue: typeAlgorithm & 0x0F) != nil,
              (6...8).contains(digits), key.count - 2 <= 128 else {
            return sw(StatusWord.incorrectData)
        }
        let credential = Credential(name: name, typeAlgorithm: typeAlgorithm, digits: digits, key: Array(key.dropFirst(2)),
                                    touch: touch, counter: counter)
        if let at = credentials.firstIndex(where: { $0.name == name }) {
            credentials[at] = credential
        } else {
            guard credentials.count < Self.maxCredentials else { return sw(StatusWord.notEnoughMemory) }
            credentials.append(credential)
        }
        isDirty = true
        return sw(StatusWord.success)
    }

    private func delete(_ apdu: CommandAPDU) -> [UInt8] {
        guard let tlvs = TLV.parseAll(apdu.data), let name = tlvs.first(tag: YKOATH.Tag.name) else {
            return sw(StatusWord.incorrectData)
        }
        guard let at = credentials.firstIndex(where: { $0.name == name }) else { return sw(StatusWord.referencedDataInvalid) }
        credentials.remove(at: at)
        isDirty = true
        return sw(StatusWord.success)
    }

    private func setCode(_ apdu: CommandAPDU) -> [UInt8] {
        guard let tlvs = TLV.parseAll(apdu.data), let key = tlvs.first(where: { $0.tag == YKOATH.Tag.key }) else {
            return sw(StatusWord.incorrectData)
        }
        if key.value.isEmpty {
            accessKey = nil
            isDirty = true
            return sw(StatusWord.success)
        }
        guard key.value.count == 1 + YKOATH.keyLength, key.value[0] & 0x0F == HashAlgorithm.sha1.rawValue,
              let challenge = tlvs.first(tag: YKOATH.Tag.challenge), let response = tlvs.first(tag: YKOATH.Tag.response) else {
            return sw(StatusWord.incorrectData)
        }
        let newKey = Array(key.value.dropFirst())
        // The host proves it knows the key it sets.
        guard ConstantTime.equals(HMAC.authenticate(.sha1, key: newKey, message: challenge), response) else {
            return sw(StatusWord.incorrectData)
        }
        accessKey = newKey
        isDirty = true
        return sw(StatusWord.success)
    }

    private func list() -> [UInt8] {
        respond(credentials.map { TLV(YKOATH.Tag.nameList, [$0.typeAlgorithm] + $0.name) }.encoded)
    }

    private func compute(_ c: Credential, challenge: [UInt8], truncated: Bool) -> TLV? {
        guard let algorithm = c.algorithm else { return nil }
        let mac = HMAC.authenticate(algorithm, key: c.key, message: challenge)
        if truncated {
            guard let v = OTP.dynamicTruncate(mac) else { return nil }
            return TLV(YKOATH.Tag.truncatedResponse, [c.digits, UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)])
        }
        return TLV(YKOATH.Tag.response, [c.digits] + mac)
    }

    private func calculate(_ apdu: CommandAPDU) -> [UInt8] {
        guard let tlvs = TLV.parseAll(apdu.data), let name = tlvs.first(tag: YKOATH.Tag.name) else {
            return sw(StatusWord.incorrectData)
        }
        guard let at = credentials.firstIndex(where: { $0.name == name }) else { return sw(StatusWord.referencedDataInvalid) }
        var challenge = tlvs.first(tag: YKOATH.Tag.challenge) ?? []
        if credentials[at].isHOTP {
            // HOTP: the card's own counter is the message, and it moves on.
            challenge = OTP.counterBytes(UInt64(credentials[at].counter))
            credentials[at].counter &+= 1
            isDirty = true
        }
        if credentials[at].touch && !touchProvider() { return sw(StatusWord.conditionsNotSatisfied) }
        guard let out = compute(credentials[at], challenge: challenge, truncated: apdu.p2 & 0x01 != 0) else {
            return sw(StatusWord.memoryFailure)
        }
        return respond(out.encoded)
    }

    private func calculateAll(_ apdu: CommandAPDU) -> [UInt8] {
        guard let tlvs = TLV.parseAll(apdu.data), let challenge = tlvs.first(tag: YKOATH.Tag.challenge) else {
            return sw(StatusWord.incorrectData)
        }
        var out: [TLV] = []
        for c in credentials {
            out.append(TLV(YKOATH.Tag.name, c.name))
            if c.isHOTP {
                out.append(TLV(YKOATH.Tag.hotp, [c.digits]))
            } else if c.touch {
                out.append(TLV(YKOATH.Tag.touch, [c.digits]))
            } else {
                guard let r = compute(c, challenge: challenge, truncated: apdu.p2 & 0x01 != 0) else { return sw(StatusWord.memoryFailure) }
                out.append(r)
            }
        }
        return respond(out.encoded)
    }

    // MARK: - Responses

    private func sw(_ word: UInt16) -> [UInt8] { [UInt8(word >> 8), UInt8(word & 0xFF)] }

    /// Sends up to `maxChunk` bytes and keeps the rest for SEND REMAINING (61xx).
    private func respond(_ data: [UInt8]) -> [UInt8] {
        if data.count <= Self.maxChunk { return data + sw(StatusWord.success) }
        pendingResponse = Array(data.dropFirst(Self.maxChunk))
        let left = min(pendingResponse.count, 0xFF)
        return Array(data.prefix(Self.maxChunk)) + [0x61, UInt8(left)]
    }

    private func sendRemaining() -> [UInt8] {
        guard !pendingResponse.isEmpty else { return sw(StatusWord.conditionsNotSatisfied) }
        let data = pendingResponse
        pendingResponse = []
        return respond(data)
    }

    // MARK: - Persistence

    /// The applet's state as text: `smartotp-card 1`, `salt HEX`, `key HEX`, and one
    /// `cred TYPEALG DIGITS TOUCH COUNTER NAME-HEX KEY-HEX` line per credential.
    public func serialise() -> String {
        var out = "smartotp-card 1\nsalt \(Hex.encode(salt))\n"
        if let accessKey { out += "key \(Hex.encode(accessKey))\n" }
        for c in credentials {
            out += "cred \(c.typeAlgorithm) \(c.digits) \(c.touch ? 1 : 0) \(c.counter) \(Hex.encode(c.name)) \(Hex.encode(c.key))\n"
        }
        return out
    }

    public struct StateError: Error, CustomStringConvertible {
        public let line: Int
        public let reason: String
        public var description: String { "line \(line): \(reason)" }
    }

    /// Restores a state written by `serialise()`.
    public func restore(_ text: String) throws(StateError) {
        var n = 0
        var sawHeader = false
        var newCredentials: [Credential] = []
        var newSalt: [UInt8]?
        var newKey: [UInt8]?
        for line in text.split(separator: "\n") {
            n += 1
            let f = line.split(separator: " ").map(String.init)
            guard let keyword = f.first else { continue }
            if !sawHeader {
                guard line == "smartotp-card 1" else { throw StateError(line: n, reason: "not a smartotp-card state file") }
                sawHeader = true
                continue
            }
            switch keyword {
            case "salt":
                guard f.count == 2, let s = try? Hex.decode(f[1]), !s.isEmpty else { throw StateError(line: n, reason: "bad salt") }
                newSalt = s
            case "key":
                guard f.count == 2, let k = try? Hex.decode(f[1]), k.count == YKOATH.keyLength else { throw StateError(line: n, reason: "bad key") }
                newKey = k
            case "cred":
                guard f.count == 7, let ta = UInt8(f[1]), let d = UInt8(f[2]), let t = Int(f[3]), let c = UInt32(f[4]),
                      let name = try? Hex.decode(f[5]), let key = try? Hex.decode(f[6]) else {
                    throw StateError(line: n, reason: "bad credential")
                }
                newCredentials.append(Credential(name: name, typeAlgorithm: ta, digits: d, key: key, touch: t != 0, counter: c))
            default:
                throw StateError(line: n, reason: "unknown keyword \(keyword.prefix(16))")
            }
        }
        guard sawHeader, let newSalt else { throw StateError(line: max(n, 1), reason: "incomplete state") }
        salt = newSalt
        accessKey = newKey
        credentials = newCredentials
        reset()
    }
}
