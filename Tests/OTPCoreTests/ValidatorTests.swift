import Testing
import OTPCore

@Suite("Validation windows and the replay rule")
struct ValidatorTests {
    let totp = try! OTPParameters(kind: .totp(period: 30), algorithm: .sha1, digits: 6)
    let hotp = try! OTPParameters(kind: .hotp, algorithm: .sha1, digits: 6)

    func code(_ step: UInt64, _ p: OTPParameters) -> String {
        OTP.code(secret: rfc4226Secret, parameters: p, counter: step) ?? "none"
    }

    @Test func totpSkewAcceptsNeighboursOnly() {
        let v = TOTPValidator(parameters: totp, skew: 1)
        let now: Int64 = 1_700_000_000
        let step = now / 30
        for delta in -1...1 {
            let s = UInt64(step + Int64(delta))
            #expect(v.validate(code(s, totp), secret: rfc4226Secret, at: now, lastUsedStep: nil) == .accepted(counter: s))
        }
        #expect(v.validate(code(UInt64(step + 2), totp), secret: rfc4226Secret, at: now, lastUsedStep: nil) == .rejected)
        #expect(v.validate(code(UInt64(step - 2), totp), secret: rfc4226Secret, at: now, lastUsedStep: nil) == .rejected)
    }

    @Test func totpReplayIsRefused() {
        let v = TOTPValidator(parameters: totp, skew: 1)
        let now: Int64 = 1_700_000_000
        let step = UInt64(now / 30)
        #expect(v.validate(code(step, totp), secret: rfc4226Secret, at: now, lastUsedStep: step) == .replayed(counter: step))
        // An older step than the last used is a replay too, even inside the skew.
        #expect(v.validate(code(step - 1, totp), secret: rfc4226Secret, at: now, lastUsedStep: step) == .replayed(counter: step - 1))
        // A newer step is fine.
        #expect(v.validate(code(step + 1, totp), secret: rfc4226Secret, at: now, lastUsedStep: step) == .accepted(counter: step + 1))
    }

    @Test func malformedInputIsRejectedNotTrapped() {
        let v = TOTPValidator(parameters: totp, skew: 1)
        for bad in ["", "12345", "1234567", "abcdef", "12345\u{0}", String(repeating: "9", count: 100_000), "١٢٣٤٥٦", "12 34 5x"] {
            #expect(v.validate(bad, secret: rfc4226Secret, at: 1_700_000_000, lastUsedStep: nil) == .rejected)
        }
        // Before the epoch there is no step.
        #expect(v.validate("755224", secret: rfc4226Secret, at: -5, lastUsedStep: nil) == .rejected)
        #expect(v.validate("755 224", secret: rfc4226Secret, at: 10, lastUsedStep: nil) == .accepted(counter: 0))
    }

    @Test func hotpWindowFromLastUsed() {
        let v = HOTPValidator(parameters: hotp, window: 3)
        // Never used: counters 0, 1, 2 are in the window.
        #expect(v.validate("359152", secret: rfc4226Secret, initialCounter: 0, lastUsedCounter: nil) == .accepted(counter: 2))
        #expect(v.validate("969429", secret: rfc4226Secret, initialCounter: 0, lastUsedCounter: nil) == .rejected)
        // Last used 2: window is 3, 4, 5.
        #expect(v.validate("254676", secret: rfc4226Secret, initialCounter: 0, lastUsedCounter: 2) == .accepted(counter: 5))
        #expect(v.validate("359152", secret: rfc4226Secret, initialCounter: 0, lastUsedCounter: 2) == .replayed(counter: 2))
        #expect(v.validate("287082", secret: rfc4226Secret, initialCounter: 0, lastUsedCounter: 2) == .rejected)
        // An initial counter moves the window start.
        #expect(v.validate("755224", secret: rfc4226Secret, initialCounter: 5, lastUsedCounter: nil) == .rejected)
        #expect(v.validate("287922", secret: rfc4226Secret, initialCounter: 5, lastUsedCounter: nil) == .accepted(counter: 6))
    }

    @Test func hotpCounterAtTheTopDoesNotOverflow() {
        let v = HOTPValidator(parameters: hotp, window: 10)
        #expect(v.validate("123456", secret: rfc4226Secret, initialCounter: 0, lastUsedCounter: UInt64.max) == .rejected)
        #expect(v.validate("123456", secret: rfc4226Secret, initialCounter: UInt64.max - 2, lastUsedCounter: nil) == .rejected)
    }

    @Test func hotpResyncFindsTwoConsecutiveCodes() {
        let v = HOTPValidator(parameters: hotp, window: 3)
        #expect(v.resync(first: "162583", second: "399871", secret: rfc4226Secret, start: 0, searchLimit: 100) == 8)
        // Not consecutive: no match.
        #expect(v.resync(first: "162583", second: "520489", secret: rfc4226Secret, start: 0, searchLimit: 100) == nil)
        // Outside the search limit.
        #expect(v.resync(first: "162583", second: "399871", secret: rfc4226Secret, start: 0, searchLimit: 5) == nil)
    }

    @Test func parameterRanges() {
        #expect(throws: OTPError.digitsOutOfRange(5)) { try OTPParameters(kind: .hotp, digits: 5) }
        #expect(throws: OTPError.digitsOutOfRange(9)) { try OTPParameters(kind: .hotp, digits: 9) }
        #expect(throws: OTPError.periodOutOfRange(0)) { try OTPParameters(kind: .totp(period: 0)) }
        #expect(throws: OTPError.secretLength(65)) { try OTPParameters.checkSecret(length: 65) }
        #expect(throws: OTPError.secretLength(0)) { try OTPParameters.checkSecret(length: 0) }
    }

    @Test func sevenAndEightDigits() throws {
        let p7 = try OTPParameters(kind: .hotp, digits: 7)
        let p8 = try OTPParameters(kind: .hotp, digits: 8)
        // RFC 4226 truncated value for counter 0 is 1284755224.
        #expect(OTP.code(secret: rfc4226Secret, parameters: p7, counter: 0) == "4755224")
        #expect(OTP.code(secret: rfc4226Secret, parameters: p8, counter: 0) == "84755224")
        #expect(OTP.format(42, digits: 8) == "00000042")
    }
}

@Suite("Challenge-response and constant time")
struct ChallengeResponseTests {
    @Test func fullAndTruncatedAgree() throws {
        let challenge = OTP.counterBytes(1)
        let full = ChallengeResponse.full(secret: rfc4226Secret, challenge: challenge, algorithm: .sha1)
        #expect(full.count == 20)
        #expect(OTP.dynamicTruncate(full) == 1094287082)
        #expect(ChallengeResponse.truncated(secret: rfc4226Secret, challenge: challenge, algorithm: .sha1) == 1094287082)
        #expect(ChallengeResponse.verify(response: full, secret: rfc4226Secret, challenge: challenge, algorithm: .sha1))
        var tampered = full
        tampered[19] ^= 1
        #expect(!ChallengeResponse.verify(response: tampered, secret: rfc4226Secret, challenge: challenge, algorithm: .sha1))
        #expect(!ChallengeResponse.verify(response: [], secret: rfc4226Secret, challenge: challenge, algorithm: .sha1))
    }

    @Test func hmacKnownAnswer() throws {
        // RFC 2202 §3 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = HMAC.authenticate(.sha1, key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
        #expect(Hex.encode(mac) == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
    }

    @Test func constantTimeEquality() {
        #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2]))
        #expect(ConstantTime.equals([UInt8](), []))
        var secret: [UInt8] = [9, 9, 9]
        ConstantTime.wipe(&secret)
        #expect(secret == [0, 0, 0])
        var source: [UInt8] = [7, 7]
        let s = SecretBytes(consuming: &source)
        #expect(source.isEmpty && s.count == 2)
        #expect(s.constantTimeEquals(SecretBytes([7, 7])))
        #expect(!s.constantTimeEquals(SecretBytes([7, 8])))
    }

    @Test func pbkdf2KnownAnswer() throws {
        // RFC 6070 test vector 1: "password", "salt", c = 1, dkLen = 20.
        let dk = try #require(PBKDF2.sha1(password: Array("password".utf8), salt: Array("salt".utf8), iterations: 1, length: 20))
        #expect(Hex.encode(dk) == "0c60c80f961f0e71f3a9b524af6012062fe037a6")
    }
}
