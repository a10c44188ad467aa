import Testing
import OTPCore
import SmartOTPAuth
import TokenStore
import Verifier

/// One policy for every caller: the policy file's words first, then the service's arguments.
@Suite("ModuleConfig: the policy file, then the arguments")
struct PolicyLoadingTests {
    let file = "/etc/smartotp/smartotp.conf"

    func load(_ text: String, _ arguments: [String]) throws(ConfigError) -> ModuleConfig.Parsed {
        try ModuleConfig.parse(file: file, words: Setting.words(of: text), arguments: arguments.map(ModuleConfig.Argument.init))
    }

    @Test func theFileSetsThePolicyOfEveryService() throws {
        let text = "# fleet-wide\nstore=/srv/otp\ndeny=3 unlock_time=60\n\tfail_interval=120 even_deny_root\n"
        let sudo = try load(text, []).config
        let sshd = try load(text, ["nullok"]).config
        for c in [sudo, sshd] {
            #expect(c.store == "/srv/otp")
            #expect(c.policy.lock == LockPolicy(deny: 3, failInterval: 120, unlockTime: 60, evenDenyRoot: true, rootUnlockTime: nil))
        }
        #expect(sudo.policy == sshd.policy, "two services with no lock arguments judge one failure count alike")
    }

    @Test func argumentsWinForTheirServiceOnly() throws {
        let c = try load("deny=3\nskew=2\n", ["deny=7"]).config
        #expect(c.policy.lock.deny == 7)
        #expect(c.policy.skew == 2, "what the arguments leave alone comes from the file")
    }

    @Test func aMissingFileMeansTheDefaults() throws {
        #expect(try load("", []).config == ModuleConfig())
    }

    @Test func aBadValueInTheFileNamesTheFile() {
        #expect(throws: ConfigError.unreadableFile(path: file, reason: "setting deny=lots is invalid: expected a number from 0 to 1000")) {
            try load("deny=lots\n", [])
        }
    }

    @Test func unknownNamesFromTheFileAreReportedWithIt() throws {
        let parsed = try load("frobnicate\n", ["wobble=1"])
        #expect(parsed.unknown == [file + ": frobnicate", "wobble=1"])
    }

    @Test func confNamesAnotherFileAndMustBeAbsolute() throws {
        let args = ["deny=2", "conf=/etc/other.conf"].map(ModuleConfig.Argument.init)
        #expect(try ModuleConfig.file(named: args) == "/etc/other.conf")
        #expect(try ModuleConfig.file(named: []) == ModuleConfig.defaultFile)
        #expect(throws: ConfigError.self, "refused before anything is opened") {
            try ModuleConfig.file(named: [ModuleConfig.Argument("conf=smartotp.conf")])
        }
        #expect(throws: ConfigError.missingValue("conf")) { try ModuleConfig.file(named: [ModuleConfig.Argument("conf")]) }
        #expect(throws: ConfigError.self) { try load("", ["conf=relative.conf"]) }
    }
}

/// `debug` logs each step of a login (prompt, method, verdict), never what was typed.
@Suite("LoginFlow: debug tracing")
struct DebugTraceTests {
    @Test func debugLogsEachStepAndNoSecret() throws {
        var h = try Harness(card: false)
        h.config.debug = true
        let wrong = "000000"
        let (outcome, _) = h.run([wrong])
        #expect(outcome == .failure("wrong code"))
        let lines = h.audit.debugLines
        #expect(lines.contains { $0.contains("record: 0 card(s), 1 code token(s)") && $0.contains("simple password yes") })
        #expect(lines.contains { $0.hasSuffix("trying code") })
        #expect(lines.contains { $0.contains("code: prompt shown: \"One-time code (Enter for your simple password): \"") })
        #expect(lines.contains { $0.contains("code: verdict rejected, lock off after it") })
        #expect(lines.allSatisfy { $0.hasPrefix("user=alice service=test: ") })
        #expect(!lines.contains { $0.contains(wrong) }, "the typed code is never logged")
    }

    @Test func theSimplePasswordIsNeverLogged() throws {
        var h = try Harness(card: false)
        h.config.debug = true
        let (outcome, _) = h.run(["", "1234"])
        #expect(outcome == .success(.password))
        #expect(h.audit.debugLines.contains { $0.contains("password: prompt shown") })
        #expect(h.audit.debugLines.contains { $0.contains("password: verdict accepted (simple password)") })
        #expect(!h.audit.debugLines.contains { $0.contains("1234") })
    }

    @Test func withoutDebugNothingIsTraced() throws {
        let h = try Harness(card: false)
        _ = h.run(["000000"])
        #expect(h.audit.debugLines.isEmpty)
    }
}
