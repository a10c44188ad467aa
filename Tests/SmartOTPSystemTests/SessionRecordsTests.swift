import Foundation
import Testing
import OTPCore
import POSIX
import SmartOTPAuth
import SmartOTPSystem
import TokenStore
import Verifier

/// The module's side of a fleet session: `SessionRecords` writes request frames to the
/// client program and reads answer frames back. A shell script stands in for smartotp-fleet.
@Suite("SessionRecords: the module's side of the session")
struct SessionRecordsTests {
    /// Runs `body` with a fake client whose script is `text`, removed after.
    @discardableResult
    func withClient<R>(_ text: String, _ body: (String) throws -> R) throws -> R {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smartotp-fleet-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("client").path
        // Written through the POSIX layer (O_CLOEXEC): a descriptor open for writing that a
        // program spawned meanwhile by a test running in parallel inherited would make
        // executing the script fail with ETXTBSY.
        let fd = try FileDescriptor.open(path, [.writeOnly, .create, .exclusive], mode: 0o755)
        do { try fd.writeAll(Array(("#!/bin/sh\n" + text).utf8), path) } catch {
            fd.close()
            throw error
        }
        fd.close()
        return try body(path)
    }

    /// Reads one request frame, checks its first line, answers `answer` in one frame, for
    /// each of `count` requests.
    func answering(_ firstLine: String, _ answer: String, count: Int = 1) -> String {
        """
        for i in $(seq \(count)); do
            IFS= read -r n || exit 3
            req=$(dd bs=1 count="$n" 2>/dev/null)
            case "$req" in "\(firstLine)"*) ;; *) exit 4;; esac
            ans='\(answer)'
            printf '%s\\n%s' "${#ans}" "$ans"
        done
        """
    }

    @Test func requestsAndAnswersGoThroughOneSession() throws {
        let none = "smartotp-helper 1\nnone\n"
        try withClient(answering("alice summary", none, count: 2)) { config in
            let records = SessionRecords(client: config)
            let user = try UserName("alice")
            #expect(try records.summary(user, now: 0) == nil)
            #expect(try records.summary(user, now: 0) == nil, "a second request on the same client process")
        }
    }

    @Test func aVerdictArrivesTyped() throws {
        let verdict = HelperProtocol.encode(.attempt(Attempt(.rejected, lock: .lockedUntil(77))))
        try withClient(answering("bob code\n123456", verdict)) { config in
            let attempt = try SessionRecords(client: config).perform(.code("123456"), for: try UserName("bob"), now: 0)
            #expect(attempt == Attempt(.rejected, lock: .lockedUntil(77)))
        }
    }

    @Test func aClientOthersCouldReplaceIsNotRun() throws {
        try withClient(answering("alice summary", "smartotp-helper 1\nnone\n")) { config in
            let path = config
            chmod(path, 0o777)
            do {
                _ = try SessionRecords(client: config).summary(try UserName("alice"), now: 0)
                Issue.record("a world-writable client was run")
            } catch {
                #expect("\(error)".contains("not writable by group or others"))
            }
        }
    }

    @Test func aClientThatSaysNothingFramedIsAnErrorNotAVerdict() throws {
        for script in ["IFS= read -r n; printf 'hello\\n'", "exit 0", "IFS= read -r n; printf '99999999\\n'"] {
            try withClient(script) { config in
                #expect(throws: RecordError.self, "\(script)") { try SessionRecords(client: config).summary(try UserName("alice"), now: 0) }
            }
        }
    }

    /// The client's arguments: the module's own settings after `--`, and PAM's items.
    @Test func theClientGetsTheModulesSettings() throws {
        let records = SessionRecords(client: "/x", service: "sudo", remoteHost: "192.0.2.1",
                                     settings: [Setting("server=https://a:1"), Setting("offline=tap"), Setting("debug")])
        #expect(records.arguments == ["--session", "--service", "sudo", "--rhost", "192.0.2.1", "--", "server=https://a:1", "offline=tap", "debug"])
        #expect(SessionRecords(client: "/x").arguments == ["--session", "--"])
    }

    @Test func aNoticeIsNoVerdict() throws {
        try withClient(answering("alice summary", FleetNotice.text("no verifier answered"))) { config in
            #expect(throws: RecordError.verifier("\(config): no verdict from the fleet (no verifier answered)")) {
                try SessionRecords(client: config).summary(try UserName("alice"), now: 0)
            }
        }
    }
}
