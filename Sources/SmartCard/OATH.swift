import OTPCore

/// Numbers of Yubico's YKOATH protocol (developers.yubico.com/OATH/YKOATH_Protocol.html).
public enum YKOATH {
    /// The OATH application identifier (SELECT by AID).
    public static let aid: [UInt8] = [0xA0, 0x00, 0x00, 0x05, 0x27, 0x21, 0x01]

    public enum Instruction {
        public static let put: UInt8 = 0x01
        public static let delete: UInt8 = 0x02
        public static let setCode: UInt8 = 0x03
        public static let reset: UInt8 = 0x04
        public static let rename: UInt8 = 0x05
        public static let select: UInt8 = 0xA4
        public static let list: UInt8 = 0xA1
        public static let calculate: UInt8 = 0xA2
        public static let validate: UInt8 = 0xA3
        public static let calculateAll: UInt8 = 0xA4
        public static let sendRemaining: UInt8 = 0xA5
    }

    public enum Tag {
        public static let name: UInt8 = 0x71
        public static let nameList: UInt8 = 0x72
        public static let key: UInt8 = 0x73
        public static let challenge: UInt8 = 0x74
        public static let response: UInt8 = 0x75
        public static let truncatedResponse: UInt8 = 0x76
        public static let hotp: UInt8 = 0x77
        public static let property: UInt8 = 0x78
        public static let version: UInt8 = 0x79
        public static let imf: UInt8 = 0x7A
        public static let algorithm: UInt8 = 0x7B
        public static let touch: UInt8 = 0x7C
    }

    /// High nibble of the type byte.
    public static let typeHOTP: UInt8 = 0x10
    public static let typeTOTP: UInt8 = 0x20
    /// PUT property: the credential needs a touch before each calculation.
    public static let propertyRequireTouch: UInt8 = 0x02
    /// RESET's P1 P2, so that it is never sent by accident.
    public static let resetP1: UInt8 = 0xDE
    public static let resetP2: UInt8 = 0xAD
    /// Access key: PBKDF2-HMAC-SHA1(password, salt, 1000 iterations, 16 bytes).
    public static let keyIterations = 1000
    public static let keyLength = 16
    /// Secrets shorter than this are zero-padded by clients (HMAC pads with zeros anyway).
    public static let minimumKeyLength = 14
    public static let defaultPeriod = 30

    /// The credential name YKOATH stores: `[period/][issuer:]account`, the period only
    /// for TOTP with a period other than 30 s.
    public static func credentialName(issuer: String?, account: String, kind: OTPKind) -> String {
        var name = ""
        if case .totp(let p) = kind, p != defaultPeriod { name += msg("\(p)/") }
        if let issuer, !issuer.isEmpty { name += issuer + ":" }
        return name + account
    }

    /// The key as PUT sends it: hashed when longer than the hash block (as HMAC would),
    /// zero-padded to 14 bytes (as HMAC would, so the MAC is unchanged).
    public static func normalisedKey(_ secret: [UInt8], algorithm: HashAlgorithm) -> [UInt8] {
        var key = secret.count > algorithm.blockSize ? Digest.hash(algorithm, secret) : secret
        while key.count < minimumKeyLength { key.append(0) }
        return key
    }
}

/// What SELECT tells about the applet.
public struct OATHSelectInfo: Sendable, Equatable {
    public var version: [UInt8]
    /// The applet's salt, which doubles as the card's identity.
    public var salt: [UInt8]
    /// Present when an access code is set: the challenge VALIDATE must answer.
    public var challenge: [UInt8]?

    /// The device id smartotp records: the salt in hex.
    public var deviceID: String { Hex.encode(salt) }
    public var versionString: String { version.map(String.init).joined(separator: ".") }
}

/// One entry of LIST.
public struct OATHCredentialInfo: Sendable, Equatable {
    public var name: String
    public var kind: UInt8
    public var algorithm: UInt8
}

/// One entry of CALCULATE ALL: a truncated code, or why there is none (HOTP, touch).
public struct OATHCalculatedCode: Sendable, Equatable {
    public enum Value: Sendable, Equatable {
        case truncated(digits: Int, value: UInt32)
        case hotp(digits: Int)
        case touchRequired(digits: Int)
        case full(digits: Int, response: [UInt8])
    }

    public var name: String
    public var value: Value

    /// The code as a phone app shows it, when there is one.
    public var code: String? {
        if case .truncated(let d, let v) = value { return OTP.format(v & 0x7FFF_FFFF, digits: d) }
        return nil
    }
}

/// A YKOATH session, byte for byte as a YubiKey speaks it, over any `CardTransport`.
public final class OATHSession {
    public let connection: APDUConnection
    public private(set) var info: OATHSelectInfo?

    public init(transport: CardTransport) {
        connection = APDUConnection(transport: transport, sendRemainingInstruction: YKOATH.Instruction.sendRemaining)
    }

    /// SELECT the OATH applet. Answers: VERSION, NAME (salt), and CHALLENGE when protected.
    @discardableResult
    public func select() throws(CardError) -> OATHSelectInfo {
        let r = try connection.send(CommandAPDU(ins: YKOATH.Instruction.select, p1: 0x04, p2: 0x00, data: YKOATH.aid))
        switch r.sw {
        case StatusWord.success: break
        case StatusWord.fileNotFound, StatusWord.instructionNotSupported, StatusWord.incorrectP1P2:
            throw .applicationNotFound
        default: throw .status(r.sw)
        }
        guard let tlvs = TLV.parseAll(r.data) else { throw .malformedResponse("SELECT answer is not TLV") }
        guard let version = tlvs.first(tag: YKOATH.Tag.version), let salt = tlvs.first(tag: YKOATH.Tag.name), !salt.isEmpty else {
            throw .malformedResponse("SELECT answer lacks version or name")
        }
        let selected = OATHSelectInfo(version: version, salt: salt, challenge: tlvs.first(tag: YKOATH.Tag.challenge))
        info = selected
        return selected
    }

    /// The access key for `password` on this card (PBKDF2 over the card's salt).
    public func deriveKey(password: String) throws(CardError) -> SecretBytes {
        guard let salt = info?.salt else { throw .malformedResponse("derive a key after SELECT") }
        guard var key = PBKDF2.sha1(password: Array(password.utf8), salt: salt,
                                    iterations: YKOATH.keyIterations, length: YKOATH.keyLength) else {
            throw .malformedResponse("PBKDF2 failed")
        }
        return SecretBytes(consuming: &key)
    }

    /// VALIDATE: answers the card's challenge with the access key and checks the card's
    /// answer to ours (mutual authentication). Needs a fresh SELECT's challenge.
    public func validate(key: SecretBytes) throws(CardError) {
        try validate { cardChallenge, ours in
            (HMAC.authenticate(.sha1, key: key, message: cardChallenge), HMAC.authenticate(.sha1, key: key, message: ours))
        }
    }

    /// VALIDATE with the answers computed elsewhere (by whoever holds the key: the setuid
    /// helper, for a module that runs as the user). `answers` gets the card's challenge and
    /// ours and returns (our response, the card's expected response); nil: no key.
    /// `ours` is the challenge the card must answer (8 random bytes when nil); a verifier
    /// that holds the key answers only challenges it issued itself.
    public func validate(ours given: [UInt8]? = nil, answers: ([UInt8], [UInt8]) -> (response: [UInt8], expected: [UInt8])?) throws(CardError) {
        guard let challenge = info?.challenge else { return }  // not protected
        guard let ours = given ?? SecureRandom.bytes(8) else { throw .malformedResponse("no random bytes") }
        guard let (answer, expected) = answers(challenge, ours) else { throw .accessCodeRequired }
        let data = [TLV(YKOATH.Tag.response, answer), TLV(YKOATH.Tag.challenge, ours)].encoded
        let r = try connection.send(CommandAPDU(ins: YKOATH.Instruction.validate, data: data))
        if r.sw == StatusWord.incorrectData || r.sw == StatusWord.securityStatusNotSatisfied { throw .wrongAccessCode }
        guard r.sw == StatusWord.success else { throw .status(r.sw) }
        guard let tlvs = TLV.parseAll(r.data), let cardAnswer = tlvs.first(tag: YKOATH.Tag.response) else {
            throw .malformedResponse("VALIDATE answer lacks a response")
        }
        // A card that cannot prove it knows the key is not our card.
        guard ConstantTime.equals(cardAnswer, expected) else { throw .wrongAccessCode }
        info?.challenge = nil
    }

    /// CALCULATE for one credential. `truncated` false asks for the full HMAC.
    public func calculate(name: String, challenge: [UInt8], truncated: Bool) throws(CardError) -> OATHCalculatedCode.Value {
        let data = [TLV(YKOATH.Tag.name, Array(name.utf8)), TLV(YKOATH.Tag.challenge, challenge)].encoded
        let r = try connection.send(CommandAPDU(ins: YKOATH.Instruction.calculate, p2: truncated ? 0x01 : 0x00, data: data))
        try check(r.sw)
        guard let tlvs = TLV.parseAll(r.data), let first = tlvs.first else { throw .malformedResponse("CALCULATE answer is not TLV") }
        return try Self.value(of: first)
    }

    /// CALCULATE ALL with a TOTP challenge, truncated.
    public func calculateAll(challenge: [UInt8]) throws(CardError) -> [OATHCalculatedCode] {
        let data = TLV(YKOATH.Tag.challenge, challenge).encoded
        let r = try connection.send(CommandAPDU(ins: YKOATH.Instruction.calculateAll, p2: 0x01, data: data))
        try check(r.sw)
        guard let tlvs = TLV.parseAll(r.data), tlvs.count % 2 == 0 else { throw .malformedResponse("CALCULATE ALL answer") }
        var out: [OATHCalculatedCode] = []
        var i = 0
        while i + 1 < tlvs.count {
            guard tlvs[i].tag == YKOATH.Tag.name, let name = String(validating: tlvs[i].value, as: UTF8.self) else {
                throw .malformedResponse("CALCULATE ALL entry without a name")
            }
            out.append(OATHCalculatedCode(name: name, value: try Self.value(of: tlvs[i + 1])))
            i += 2
        }
        return out
    }

    static func value(of tlv: TLV) throws(CardError) -> OATHCalculatedCode.Value {
        guard let digitsByte = tlv.value.first else { throw .malformedResponse("empty response object") }
        let digits = Int(digitsByte)
        let rest = Array(tlv.value.dropFirst())
        switch tlv.tag {
        case YKOATH.Tag.truncatedResponse:
            guard rest.count == 4 else { throw .malformedResponse("truncated response is not 4 bytes") }
            let v = UInt32(rest[0]) << 24 | UInt32(rest[1]) << 16 | UInt32(rest[2]) << 8 | UInt32(rest[3])
            return .truncated(digits: digits, value: v & 0x7FFF_FFFF)
        case YKOATH.Tag.response: return .full(digits: digits, response: rest)
        case YKOATH.Tag.hotp: return .hotp(digits: digits)
        case YKOATH.Tag.touch: return .touchRequired(digits: digits)
        default: throw .malformedResponse(msg("unexpected tag 0x\(String(tlv.tag, radix: 16))"))
        }
    }

    /// LIST the credentials.
    public func list() throws(CardError) -> [OATHCredentialInfo] {
        let r = try connection.send(CommandAPDU(ins: YKOATH.Instruction.list))
        try check(r.sw)
        guard let tlvs = TLV.parseAll(r.data) else { throw .malformedResponse("LIST answer is not TLV") }
        return try tlvs.map { (t: TLV) throws(CardError) -> OATHCredentialInfo in
            guard t.tag == YKOATH.Tag.nameList, let typeByte = t.value.first,
                  let name = String(validating: t.value.dropFirst(), as: UTF8.self) else {
                throw .malformedResponse("LIST entry")
            }
            return OATHCredentialInfo(name: name, kind: typeByte & 0xF0, algorithm: typeByte & 0x0F)
        }
    }

    /// PUT a credential (replaces one with the same name).
    public func put(name: String, parameters: OTPParameters, secret: SecretBytes, touch: Bool = false, counter: UInt32 = 0) throws(CardError) {
        let type: UInt8
        switch parameters.kind {
        case .hotp: type = YKOATH.typeHOTP
        case .totp: type = YKOATH.typeTOTP
        }
        var key = YKOATH.normalisedKey(secret.copyBytes(), algorithm: parameters.algorithm)
        defer { ConstantTime.wipe(&key) }
        var data = [TLV(YKOATH.Tag.name, Array(name.utf8)),
                    TLV(YKOATH.Tag.key, [type | parameters.algorithm.rawValue, UInt8(parameters.digits)] + key)].encoded
        // The property is written as tag and value without a length, as YubiKeys expect.
        if touch { data += [YKOATH.Tag.property, YKOATH.propertyRequireTouch] }
        if counter > 0 {
            data += TLV(YKOATH.Tag.imf, [UInt8(counter >> 24), UInt8((counter >> 16) & 0xFF),
                                         UInt8((counter >> 8) & 0xFF), UInt8(counter & 0xFF)]).encoded
        }
        defer { ConstantTime.wipe(&data) }
        try check(try connection.send(CommandAPDU(ins: YKOATH.Instruction.put, data: data)).sw)
    }

    /// DELETE a credential.
    public func delete(name: String) throws(CardError) {
        let data = TLV(YKOATH.Tag.name, Array(name.utf8)).encoded
        try check(try connection.send(CommandAPDU(ins: YKOATH.Instruction.delete, data: data)).sw)
    }

    /// SET CODE: protect the applet with `key` (nil removes the code).
    public func setCode(key: SecretBytes?) throws(CardError) {
        guard let key else {
            try check(try connection.send(CommandAPDU(ins: YKOATH.Instruction.setCode, data: TLV(YKOATH.Tag.key).encoded)).sw)
            return
        }
        guard let challenge = SecureRandom.bytes(8) else { throw .malformedResponse("no random bytes") }
        let response = HMAC.authenticate(.sha1, key: key, message: challenge)
        var data = [TLV(YKOATH.Tag.key, [YKOATH.typeTOTP | HashAlgorithm.sha1.rawValue] + key.copyBytes()),
                    TLV(YKOATH.Tag.challenge, challenge), TLV(YKOATH.Tag.response, response)].encoded
        defer { ConstantTime.wipe(&data) }
        try check(try connection.send(CommandAPDU(ins: YKOATH.Instruction.setCode, data: data)).sw)
    }

    /// RESET the applet: every credential and the access code are erased.
    public func reset() throws(CardError) {
        try check(try connection.send(CommandAPDU(ins: YKOATH.Instruction.reset, p1: YKOATH.resetP1, p2: YKOATH.resetP2)).sw)
    }

    private func check(_ sw: UInt16) throws(CardError) {
        switch sw {
        case StatusWord.success: return
        case StatusWord.securityStatusNotSatisfied: throw .accessCodeRequired
        case StatusWord.conditionsNotSatisfied: throw .touchTimeout
        case StatusWord.referencedDataInvalid: throw .noSuchCredential
        default: throw .status(sw)
        }
    }
}
