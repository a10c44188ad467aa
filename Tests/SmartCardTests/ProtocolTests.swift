import Testing
import SmartCard
import VirtualCard
import OTPCore

@Suite("ISO 7816: APDUs and TLV")
struct ISO7816Tests {
    @Test func commandEncodingShortAndExtended() {
        #expect(CommandAPDU(ins: 0xA4, p1: 4, data: YKOATH.aid).encoded == hex("00A4040007A0000005272101"))
        #expect(CommandAPDU(ins: 0xA5, le: 0).encoded == hex("00A5000000"))
        #expect(CommandAPDU(ins: 0xA1).encoded == hex("00A10000"))
        let big = [UInt8](repeating: 0xAB, count: 300)
        let ext = CommandAPDU(ins: 0x01, data: big, le: 0).encoded
        #expect(Array(ext.prefix(7)) == hex("00010000 00012C"))
        #expect(ext.count == 7 + 300 + 2)
        #expect(CommandAPDU.parse(ext) == CommandAPDU(ins: 0x01, data: big, le: 65536))
    }

    @Test func commandParsingAllCases() {
        #expect(CommandAPDU.parse(hex("00A10000")) == CommandAPDU(ins: 0xA1))
        #expect(CommandAPDU.parse(hex("00A1000000")) == CommandAPDU(ins: 0xA1, le: 256))
        #expect(CommandAPDU.parse(hex("00A2000102AABB")) == CommandAPDU(ins: 0xA2, p2: 1, data: [0xAA, 0xBB]))
        #expect(CommandAPDU.parse(hex("00A2000102AABB10")) == CommandAPDU(ins: 0xA2, p2: 1, data: [0xAA, 0xBB], le: 16))
        // Lengths that do not add up are refused, never trapped on.
        for bad in ["", "00", "00A100", "00A2000105AABB", "00A20001000005AA", "00A2000100"] {
            if bad == "00A2000100" { continue }  // Le = 256: valid case 2
            #expect(CommandAPDU.parse(hex(bad)) == nil, "\(bad)")
        }
    }

    @Test func tlvRoundTripAndRefusals() {
        let items = [TLV(0x71, Array("name".utf8)), TLV(0x74, []), TLV(0x73, [UInt8](repeating: 1, count: 200)),
                     TLV(0x75, [UInt8](repeating: 2, count: 300))]
        let encoded = items.encoded
        #expect(TLV.parseAll(encoded) == items)
        #expect(TLV(0x73, [UInt8](repeating: 1, count: 200)).encoded.prefix(3) == [0x73, 0x81, 200])
        #expect(TLV(0x75, [UInt8](repeating: 2, count: 300)).encoded.prefix(4) == [0x75, 0x82, 0x01, 0x2C])
        for bad in ["71", "7105AABB", "7181", "718105AA", "7182", "718200", "718201FF", "7180", "7183000001AA", "71FF"] {
            #expect(TLV.parseAll(hex(bad)) == nil, "\(bad)")
        }
        #expect(TLV.parseAll([]) == [])
    }

    @Test func randomBytesNeverTrapTheParsers() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let n = Int.random(in: 0...40, using: &rng)
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = TLV.parseAll(bytes)
            _ = CommandAPDU.parse(bytes)
            _ = ResponseAPDU(raw: bytes)
        }
    }

    @Test func responseChainingFollows61xx() throws {
        let t = RecordedTransport([
            ("00A10000", "0102 6102"),
            ("00A5000000", "0304 6101"),
            ("00A5000000", "05 9000"),
        ])
        let c = APDUConnection(transport: t, sendRemainingInstruction: 0xA5)
        #expect(try c.sendChecked(CommandAPDU(ins: 0xA1)) == [1, 2, 3, 4, 5])
        #expect(c.exchanged == 3)
    }

    @Test func endlessChainingIsCut() {
        let c = APDUConnection(transport: GarbageTransport { [0x61, 0x10] }, sendRemainingInstruction: 0xA5)
        #expect(throws: CardError.malformedResponse("endless response chaining")) { try c.send(CommandAPDU(ins: 0xA1)) }
        let short = APDUConnection(transport: GarbageTransport { [0x90] })
        #expect(throws: CardError.malformedResponse("answer shorter than a status word")) { try short.send(CommandAPDU(ins: 0xA1)) }
    }
}

@Suite("YKOATH session: recorded exchanges")
struct OATHRecordedTests {
    // A YubiKey 5 answer to SELECT: version 5.4.3, salt, no access code.
    static let select = ("00A4040007A0000005272101", "7903050403 71083F4A58F2B3C4D5E6 9000")

    @Test func selectAndCalculateFull() throws {
        let challenge = hex("0102030405060708")
        let t = RecordedTransport([
            Self.select,
            ("00A200001F 7113 736D6172746F74703A616C69636540686F7374 7408 0102030405060708",
             "7515 06 " + String(repeating: "AB", count: 20) + " 9000"),
        ])
        let s = OATHSession(transport: t)
        let info = try s.select()
        #expect(info.version == [5, 4, 3])
        #expect(info.deviceID == "3f4a58f2b3c4d5e6")
        #expect(info.challenge == nil)
        let v = try s.calculate(name: "smartotp:alice@host", challenge: challenge, truncated: false)
        #expect(v == .full(digits: 6, response: [UInt8](repeating: 0xAB, count: 20)))
        #expect(t.script.isEmpty)
    }

    @Test func putSendsYubicoBytes() throws {
        // PUT "test", TOTP|SHA1, 6 digits, key "Hello!\xde\xad\xbe\xef" zero-padded to 14, touch.
        let t = RecordedTransport([
            Self.select,
            ("00010000 1A 710474657374 7310 2106 48656C6C6F21DEADBEEF00000000 7802", "9000"),
        ])
        let s = OATHSession(transport: t)
        try s.select()
        let p = try OTPParameters(kind: .totp(period: 30))
        try s.put(name: "test", parameters: p, secret: SecretBytes(try Base32.decode("JBSWY3DPEHPK3PXP")), touch: true)
        #expect(t.script.isEmpty)
    }

    @Test func statusWordsBecomeTypedErrors() throws {
        let cases: [(String, CardError)] = [("6982", .accessCodeRequired), ("6985", .touchTimeout), ("6984", .noSuchCredential), ("6A84", .status(0x6A84))]
        for (sw, error) in cases {
            let t = RecordedTransport([Self.select, ("00A10000", sw)])
            let s = OATHSession(transport: t)
            try s.select()
            #expect(throws: error) { try s.list() }
        }
        let missing = OATHSession(transport: RecordedTransport([("00A4040007A0000005272101", "6A82")]))
        #expect(throws: CardError.applicationNotFound) { try missing.select() }
        let garbage = OATHSession(transport: RecordedTransport([("00A4040007A0000005272101", "79FF 9000")]))
        #expect(throws: CardError.malformedResponse("SELECT answer is not TLV")) { try garbage.select() }
    }
}

@Suite("YKOATH: host session against the virtual card's applet")
struct OATHAppletTests {
    let secret = SecretBytes(Array("12345678901234567890".utf8))

    @Test func putListCalculateDelete() throws {
        let applet = OATHApplet()
        let s = OATHSession(transport: AppletTransport(applet))
        try s.select()
        try s.put(name: "smartotp:alice", parameters: try OTPParameters(kind: .totp(period: 30), digits: 8), secret: secret)
        try s.put(name: "hotp", parameters: try OTPParameters(kind: .hotp), secret: secret)
        #expect(try s.list().map(\.name) == ["smartotp:alice", "hotp"])
        // RFC 6238 at T = 59: step 1, 8 digits → 94287082.
        let v = try s.calculate(name: "smartotp:alice", challenge: OTP.counterBytes(1), truncated: true)
        guard case .truncated(let digits, let value) = v else { Issue.record("\(v)"); return }
        #expect(OTP.format(value, digits: digits) == "94287082")
        // Full response = HMAC over the challenge, as the host verifies on a tap.
        let challenge = try #require(SecureRandom.bytes(8))
        guard case .full(_, let mac) = try s.calculate(name: "smartotp:alice", challenge: challenge, truncated: false) else {
            Issue.record("no full response"); return
        }
        #expect(ChallengeResponse.verify(response: mac, secret: secret, challenge: challenge, algorithm: .sha1))
        // HOTP counts on the card: RFC 4226 codes 755224, 287082.
        for expected in ["755224", "287082"] {
            guard case .truncated(let d, let value) = try s.calculate(name: "hotp", challenge: [], truncated: true) else {
                Issue.record("no truncated response"); return
            }
            #expect(OTP.format(value, digits: d) == expected)
        }
        let all = try s.calculateAll(challenge: OTP.counterBytes(1))
        #expect(all.first?.code == "94287082")
        #expect(all.last?.value == .hotp(digits: 6))
        try s.delete(name: "hotp")
        #expect(throws: CardError.noSuchCredential) { try s.delete(name: "hotp") }
        #expect(try s.list().count == 1)
    }

    @Test func accessCodeProtectsTheApplet() throws {
        let applet = OATHApplet()
        let s = OATHSession(transport: AppletTransport(applet))
        try s.select()
        try s.put(name: "a", parameters: try OTPParameters(kind: .totp(period: 30)), secret: secret)
        let key = try s.deriveKey(password: "hunter2")
        try s.setCode(key: key)
        let info = try s.select()
        #expect(info.challenge?.count == 8)
        #expect(throws: CardError.accessCodeRequired) { try s.list() }
        // The wrong key is refused, and the challenge is spent.
        #expect(throws: CardError.wrongAccessCode) { try s.validate(key: try s.deriveKey(password: "wrong")) }
        try s.select()
        try s.validate(key: key)
        #expect(try s.list().count == 1)
        // PBKDF2 key derivation matches the applet's salt.
        #expect(try s.deriveKey(password: "hunter2").constantTimeEquals(key))
        try s.setCode(key: nil)
        #expect(try s.select().challenge == nil)
    }

    @Test func touchRequiredWithoutTouchTimesOut() throws {
        let applet = OATHApplet()
        applet.touchProvider = { false }
        let s = OATHSession(transport: AppletTransport(applet))
        try s.select()
        try s.put(name: "t", parameters: try OTPParameters(kind: .totp(period: 30)), secret: secret, touch: true)
        #expect(throws: CardError.touchTimeout) { try s.calculate(name: "t", challenge: [1], truncated: false) }
        #expect(try s.calculateAll(challenge: [1]).first?.value == .touchRequired(digits: 6))
        applet.touchProvider = { true }
        #expect(throws: Never.self) { try s.calculate(name: "t", challenge: [1], truncated: false) }
    }

    @Test func resetErasesEverything() throws {
        let applet = OATHApplet()
        let s = OATHSession(transport: AppletTransport(applet))
        let before = try s.select().salt
        try s.put(name: "a", parameters: try OTPParameters(kind: .totp(period: 30)), secret: secret)
        try s.reset()
        let after = try s.select()
        #expect(after.salt != before)
        #expect(try s.list().isEmpty)
    }

    @Test func longListIsChained() throws {
        let applet = OATHApplet()
        let transport = AppletTransport(applet)
        let s = OATHSession(transport: transport)
        try s.select()
        for i in 0..<20 {
            try s.put(name: "account-with-a-long-name-\(i)@example.com", parameters: try OTPParameters(kind: .totp(period: 30)), secret: secret)
        }
        #expect(try s.list().count == 20)
        #expect(transport.log.contains { $0.1.suffix(2).first == 0x61 }, "LIST answer used 61xx chaining")
    }

    @Test func statePersistsAcrossRestore() throws {
        let applet = OATHApplet()
        let s = OATHSession(transport: AppletTransport(applet))
        try s.select()
        try s.put(name: "a", parameters: try OTPParameters(kind: .hotp), secret: secret, counter: 5)
        try s.setCode(key: try s.deriveKey(password: "pw"))
        let copy = OATHApplet()
        try copy.restore(applet.serialise())
        #expect(copy.salt == applet.salt)
        #expect(copy.credentials.first?.counter == 5)
        #expect(copy.accessKey == applet.accessKey)
        #expect(throws: OATHApplet.StateError.self) { try OATHApplet().restore("nonsense") }
        #expect(throws: OATHApplet.StateError.self) { try OATHApplet().restore("smartotp-card 1\ncred 1 2\n") }
    }

    @Test func appletAnswersGarbageWithStatusWords() {
        let applet = OATHApplet()
        var rng = SystemRandomNumberGenerator()
        _ = applet.process(hex("00A4040007A0000005272101"))
        for _ in 0..<20_000 {
            let n = Int.random(in: 0...64, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if n > 1 && Bool.random(using: &rng) { bytes[0] = 0; bytes[1] = [0x01, 0x02, 0x03, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5][Int.random(in: 0...7, using: &rng)] }
            let r = applet.process(bytes)
            #expect(r.count >= 2)
        }
    }

    @Test func cardRemovedMidExchangeIsTyped() throws {
        let applet = OATHApplet()
        let t = AppletTransport(applet)
        let s = OATHSession(transport: t)
        try s.select()
        t.failAfter = 0
        #expect(throws: CardError.cardRemoved) { try s.list() }
    }
}
