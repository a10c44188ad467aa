import Testing
import OTPCore

let rfc4226Secret = SecretBytes(Array("12345678901234567890".utf8))
let rfc6238Seeds: [HashAlgorithm: SecretBytes] = [
    .sha1: SecretBytes(Array("12345678901234567890".utf8)),
    .sha256: SecretBytes(Array("12345678901234567890123456789012".utf8)),
    .sha512: SecretBytes(Array("1234567890123456789012345678901234567890123456789012345678901234".utf8)),
]

@Suite("RFC 4226 and RFC 6238 vectors")
struct RFCVectorTests {
    @Test("RFC 4226 Appendix D: truncation and HOTP for counters 0–9")
    func hotpVectors() throws {
        let rows = try vectorRows("rfc4226.txt")
        #expect(rows.count == 10)
        for row in rows {
            let counter = try #require(UInt64(row[0]))
            let mac = HMAC.authenticate(.sha1, key: rfc4226Secret, message: OTP.counterBytes(counter))
            #expect(OTP.dynamicTruncate(mac) == UInt32(row[1]), "counter \(counter)")
            #expect(OTP.hotp(secret: rfc4226Secret, counter: counter, algorithm: .sha1, digits: 6) == row[2])
        }
    }

    @Test("RFC 6238 Appendix B: all 18 vectors, three algorithms")
    func totpVectors() throws {
        let rows = try vectorRows("rfc6238.txt")
        #expect(rows.count == 18)
        for row in rows {
            let time = try #require(Int64(row[0]))
            let algorithm = try #require(HashAlgorithm(name: row[3]))
            let step = try #require(OTP.timeStep(at: time, period: 30))
            #expect(step == UInt64(row[1], radix: 16), "time \(time)")
            let secret = try #require(rfc6238Seeds[algorithm])
            let params = try OTPParameters(kind: .totp(period: 30), algorithm: algorithm, digits: 8)
            #expect(OTP.code(secret: secret, parameters: params, counter: step) == row[2], "\(algorithm) at \(time)")
            // And the validator accepts it at exactly that time with no skew.
            let v = TOTPValidator(parameters: params, skew: 0)
            #expect(v.validate(row[2], secret: secret, at: time, lastUsedStep: nil) == .accepted(counter: step))
        }
    }
}
