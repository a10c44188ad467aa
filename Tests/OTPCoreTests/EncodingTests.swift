import Testing
import OTPCore

@Suite("Base32, hex and otpauth URIs")
struct EncodingTests {
    @Test("RFC 4648 §10 Base32 vectors")
    func base32Vectors() throws {
        let vectors = [("", ""), ("f", "MY======"), ("fo", "MZXQ===="), ("foo", "MZXW6==="),
                       ("foob", "MZXW6YQ="), ("fooba", "MZXW6YTB"), ("foobar", "MZXW6YTBOI======")]
        for (plain, encoded) in vectors {
            #expect(Base32.encode(Array(plain.utf8), padding: true) == encoded)
            #expect(try Base32.decode(encoded) == Array(plain.utf8))
            #expect(try Base32.decode(encoded.lowercased().replacingOccurrences(of: "=", with: "")) == Array(plain.utf8))
        }
    }

    @Test func base32ToleratesSpacesAndRefusesBadCharactersWithPosition() throws {
        #expect(try Base32.decode("mzxw 6ytb oi") == Array("foobar".utf8))
        #expect(throws: OTPError.invalidBase32(position: 3, character: "'1'")) { try Base32.decode("MZ1W6") }
        #expect(throws: OTPError.invalidBase32(position: 5, character: "'A'")) { try Base32.decode("MY==A") }
        #expect(throws: OTPError.invalidBase32(position: 2, character: "U+0")) { try Base32.decode("M\u{0}") }
    }

    @Test func randomRoundTrips() throws {
        var rng = SystemRandomNumberGenerator()
        for n in 0..<80 {
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(try Base32.decode(Base32.encode(bytes)) == bytes)
            #expect(try Hex.decode(Hex.encode(bytes)) == bytes)
        }
        #expect(throws: OTPError.invalidHex(position: 3)) { try Hex.decode("abc") }
        #expect(throws: OTPError.invalidHex(position: 2)) { try Hex.decode("ag") }
    }

    @Test func uriRoundTrip() throws {
        let p = try OTPParameters(kind: .totp(period: 60), algorithm: .sha256, digits: 8)
        let uri = OTPAuthURI(parameters: p, secretBase32: "JBSWY3DPEHPK3PXP", issuer: "Big Bank", account: "alice@host")
        let text = uri.format()
        #expect(text == "otpauth://totp/Big%20Bank:alice%40host?secret=JBSWY3DPEHPK3PXP&issuer=Big%20Bank&algorithm=SHA256&digits=8&period=60")
        #expect(try OTPAuthURI.parse(text) == uri)
        let h = OTPAuthURI(parameters: try OTPParameters(kind: .hotp), secretBase32: "JBSWY3DPEHPK3PXP", issuer: nil, account: "bob", counter: 42)
        #expect(try OTPAuthURI.parse(h.format()) == h)
    }

    @Test func uriAsGoogleAuthenticatorWritesIt() throws {
        let uri = try OTPAuthURI.parse("otpauth://totp/ACME%20Co:john.doe@email.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ&issuer=ACME%20Co&image=x")
        #expect(uri.issuer == "ACME Co")
        #expect(uri.account == "john.doe@email.com")
        #expect(uri.parameters == (try OTPParameters(kind: .totp(period: 30), algorithm: .sha1, digits: 6)))
    }

    @Test("An issuer holding a colon survives a round trip (found by fuzz-uri)")
    func issuerWithColon() throws {
        let p = try OTPParameters(kind: .totp(period: 30))
        let uri = OTPAuthURI(parameters: p, secretBase32: "JBSWY3DP", issuer: "a:b", account: "c:d")
        #expect(try OTPAuthURI.parse(uri.format()) == uri)
        #expect(try OTPAuthURI.parse("otpauth://totp/Big%20?secret=JBSWY3DP&issuer=X").account == "Big")
    }

    @Test func badURIsNameTheField() {
        let cases: [(String, OTPError)] = [
            ("http://totp/x?secret=JBSWY3DP", .invalidURI("scheme is not otpauth://")),
            ("otpauth://totp/x", .invalidURI("missing secret")),
            ("otpauth://motp/x?secret=JBSWY3DP", .invalidURI("type must be totp or hotp")),
            ("otpauth://totp/x?secret=JBSWY3DP&digits=9", .digitsOutOfRange(9)),
            ("otpauth://totp/x?secret=JBSWY3DP&algorithm=MD5", .invalidURI("unknown algorithm MD5")),
            ("otpauth://totp/x?secret=JBSWY3DP&period=-1", .periodOutOfRange(-1)),
            ("otpauth://totp/%ZZ?secret=JBSWY3DP", .invalidURI("label is not valid percent-encoded UTF-8")),
            ("otpauth://totp/x?secret=JB1", .invalidBase32(position: 3, character: "'1'")),
        ]
        for (text, error) in cases {
            #expect(throws: error) { try OTPAuthURI.parse(text) }
        }
    }
}

@Suite("Byte split")
struct ByteSplitTests {
    @Test func matchesSplitOnASCII() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("ab =,\n\r#".utf8)
        for _ in 0..<2000 {
            let text = String(decoding: (0..<Int.random(in: 0...20, using: &rng)).map { _ in alphabet.randomElement(using: &rng) ?? 0x61 }, as: UTF8.self)
            for sep in [UInt8(ascii: " "), UInt8(ascii: "="), UInt8(ascii: "\n")] {
                let character = Character(Unicode.Scalar(sep))
                for max in [1, 2, Int.max] {
                    for omit in [true, false] {
                        let expected = text.utf8.split(separator: sep, maxSplits: max, omittingEmptySubsequences: omit)
                            .map { String(decoding: $0, as: UTF8.self) }
                        #expect(text.splitBytes(sep, maxSplits: max, omittingEmpty: omit) == expected, "\(text.debugDescription) \(character)")
                    }
                }
            }
        }
    }

    @Test func crlfIsTwoBytes() {
        #expect("a\r\nb".splitBytes(UInt8(ascii: "\n")) == ["a\r", "b"])
        #expect("ÄB=é".splitBytes(UInt8(ascii: "=")) == ["ÄB", "é"])
    }

    /// `equals` compares bytes: canonically equivalent spellings (é precomposed and
    /// decomposed) differ, as a record, a user name or a protocol word must; a small, a
    /// native and a decoded string of the same bytes are equal.
    @Test func equalsComparesBytes() {
        #expect("sha256".equals("sha256") && !"sha256".equals("sha25") && !"sha256".equals("sha257") && "".equals(""))
        #expect("\u{E9}" == "e\u{301}" && !"\u{E9}".equals("e\u{301}"), "String's == is canonical equivalence; equals is not")
        let long = String(repeating: "a-long-token-id-", count: 4)
        #expect(long.equals(String(decoding: Array(long.utf8), as: UTF8.self)) && !long.equals(long + "x"))
        #expect(["a", "b", "\u{E9}"].containsBytes(of: "b") && !["a", "\u{E9}"].containsBytes(of: "e\u{301}"))
    }
}
