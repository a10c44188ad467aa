import Testing
import Foundation
import Glibc
@testable import TokenStore
import OTPCore
@testable import SmartOTPAdmin

@Suite("Import from pam_oath and google-authenticator")
struct ImportTests {
    @Test func pamOathUsersFile() throws {
        let text = """
        # comment
        HOTP alice - 3132333435363738393031323334353637383930
        HOTP/E/8 bob 1234 3132333435363738393031323334353637383930 7
        HOTP/T60/7 dave - 31323334353637383930313233343536
        """
        let users = try Importers.pamOath(text, path: "/etc/users.oath", now: 1)
        #expect(users.map(\.user.value) == ["alice", "bob", "dave"])
        #expect(users[0].token.parameters.kind == .hotp && users[0].pin == nil && users[0].token.lastUsed == nil)
        #expect(users[1].token.parameters.digits == 8 && users[1].token.initialCounter == 7 && users[1].pin == "1234")
        #expect(users[1].token.lastUsed == nil, "no last code: counter 7 is the first to accept")
        #expect(users[2].token.parameters.kind == .totp(period: 60) && users[2].token.parameters.digits == 7)
        #expect(OTP.code(secret: users[0].token.secret, parameters: users[0].token.parameters, counter: 0) == "755224")
        #expect(throws: StoreError.malformed(path: "f", line: 1, reason: "unsupported token type MOTP")) {
            try Importers.pamOath("MOTP x - 3132", path: "f", now: 1)
        }
        #expect(throws: StoreError.self) { try Importers.pamOath("HOTP ../x - 3132", path: "f", now: 1) }
        #expect(throws: StoreError.self) { try Importers.pamOath("HOTP x - zz", path: "f", now: 1) }
        #expect(throws: StoreError.self) { try Importers.pamOath("HOTP x", path: "f", now: 1) }
        #expect(throws: StoreError.self) { try Importers.pamOath("HOTP x - 3132 1 123456 yesterday", path: "f", now: 1) }
        // RFC 4226 §4 (R6): at least 128 bits; 15 bytes are refused, naming the rule.
        #expect(throws: StoreError.malformed(path: "f", line: 1, reason: "the secret is 120 bits: RFC 4226 requires at least 128 (give the user a new one)")) {
            try Importers.pamOath("HOTP x - 313233343536373839303132333435", path: "f", now: 1)
        }
        #expect(throws: StoreError.self) { try Importers.googleAuthenticator("JBSWY3DPEHPK3PXP\n", path: "g", user: try UserName("a"), now: 1) }
    }

    /// After a login liboath writes the accepted counter, the code and the time, and
    /// refuses that code again: the import must refuse it too.
    @Test func pamOathReplayStateComesAlong() throws {
        let secret = "3132333435363738393031323334353637383930"
        // HOTP: counter 3 was used (code 969429, RFC 4226 appendix D).
        let hotp = try Importers.pamOath("HOTP alice - \(secret) 3 969429 2024-01-01T00:00:00L", path: "f", now: 1)[0]
        #expect(hotp.token.lastUsed == 3 && hotp.token.initialCounter == 3)
        // TOTP: the code of step S was used at a time within that step.
        let utc: (Int, Int, Int, Int, Int, Int) -> Int64? = { y, mo, d, h, mi, s in
            // 2024-01-01T00:00:00 is 1704067200; this test only uses that day.
            (y, mo, d) == (2024, 1, 1) ? 1_704_067_200 + Int64(h * 3600 + mi * 60 + s) : nil
        }
        let step = UInt64(1_704_067_200 / 30)
        let probe = try Importers.pamOath("HOTP/T30 carol - \(secret)", path: "f", now: 1)[0].token
        let code = try #require(OTP.code(secret: probe.secret, parameters: probe.parameters, counter: step))
        let totp = try Importers.pamOath("HOTP/T30 carol - \(secret) 0 \(code) 2024-01-01T00:00:10L", path: "f", now: 1, localTime: utc)[0]
        #expect(totp.token.lastUsed == step)
        // A last code that matches nothing near its time: steps up to one past it count as used.
        let odd = try Importers.pamOath("HOTP/T30 carol - \(secret) 0 000000 2024-01-01T00:00:10L", path: "f", now: 1, localTime: utc)[0]
        #expect(odd.token.lastUsed == step + 1 && !odd.notes.isEmpty)
    }

    @Test func googleAuthenticatorFile() throws {
        let totp = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n\" RATE_LIMIT 3 30 1700000000\n\" WINDOW_SIZE 17\n\" DISALLOW_REUSE 56666666 56666667\n\" TOTP_AUTH\n12345678\n87654321\n"
        let a = try Importers.googleAuthenticator(totp, path: "g", user: try UserName("alice"), now: 1)
        #expect(a.token.parameters.kind == .totp(period: 30))
        #expect(a.scratchCodes == ["12345678", "87654321"])
        #expect(a.token.lastUsed == 56_666_667, "DISALLOW_REUSE's steps are used")
        #expect(a.token.windowLimit == 17)
        #expect(a.notes.contains { $0.contains("RATE_LIMIT") })
        let hotp = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n\" HOTP_COUNTER 5\n"
        let b = try Importers.googleAuthenticator(hotp, path: "g", user: try UserName("bob"), now: 1)
        #expect(b.token.parameters.kind == .hotp && b.token.initialCounter == 5)
        #expect(throws: StoreError.self) { try Importers.googleAuthenticator("", path: "g", user: try UserName("c"), now: 1) }
        #expect(throws: StoreError.self) { try Importers.googleAuthenticator("JBSW\n123\n", path: "g", user: try UserName("c"), now: 1) }
        #expect(throws: StoreError.self) { try Importers.googleAuthenticator("JBSWY3DP\n\" DISALLOW_REUSE x\n", path: "g", user: try UserName("c"), now: 1) }
    }

    @Test func reimportNeverMovesATokenBack() throws {
        var a = try Importers.googleAuthenticator("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n\" DISALLOW_REUSE 10\n", path: "g", user: try UserName("a"), now: 1).token
        let b = try Importers.googleAuthenticator("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n\" DISALLOW_REUSE 5\n\" WINDOW_SIZE 3\n", path: "g", user: try UserName("a"), now: 1).token
        let other = try Importers.googleAuthenticator("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n", path: "g", user: try UserName("a"), now: 1).token
        #expect(a.sameCredential(as: b) && !a.sameCredential(as: other))
        a.absorbReplayState(of: b)
        #expect(a.lastUsed == 10 && a.windowLimit == 3)
    }
}
