import Foundation
import Synchronization
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

    /// A stand-in for root's agent (`smartotp-fleet --agent`) at a socket in a fresh folder:
    /// it takes one connection, hands the first frame to `hello` and, when `welcome`, sends
    /// the welcome and answers one request with `answer`. Returns the socket's path.
    func withAgent(welcome: Bool, answer: String, hello: @escaping @Sendable ([UInt8]) -> Void, _ body: (String) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smartotp-agent-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a.sock").path
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { b in for (i, c) in path.utf8.enumerated() { b[i] = c } }
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(bound == 0 && listen(listener, 4) == 0)
        let served = Thread {
            let fd = accept(listener, nil, nil)
            defer { close(fd); close(listener) }
            func frame() -> [UInt8] {
                var length: [UInt8] = []
                var b: UInt8 = 0
                while read(fd, &b, 1) == 1, b != 10 { length.append(b) }
                let count = Int(String(decoding: length, as: UTF8.self)) ?? 0
                var out = [UInt8](repeating: 0, count: count)
                var got = 0
                while got < count {
                    let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, count - got) }
                    if n <= 0 { break }
                    got += n
                }
                return out
            }
            hello(frame())
            guard welcome else { return }
            let w = Frame.encode(Array(FleetAgent.welcome.utf8))
            _ = write(fd, w, w.count)
            _ = frame()
            let a = Frame.encode(Array(answer.utf8))
            _ = write(fd, a, a.count)
        }
        served.start()
        try body(path)
    }

    /// A login through the agent: the arguments go NUL-separated in the first frame, and
    /// no client is started (client= names none).
    @Test func anAgentServesTheSessionWithTheClientsArguments() throws {
        let seen = Mutex<[UInt8]>([])
        try withAgent(welcome: true, answer: "smartotp-helper 1\nnone\n", hello: { h in seen.withLock { $0 = h } }) { (agent: String) throws in
            let records = SessionRecords(client: "/nonexistent/smartotp-fleet", agent: agent, service: "sshd", remoteHost: "x\nserver=https://evil",
                                         settings: [Setting("server=https://a:1")])
            #expect(try records.summary(try UserName("alice"), now: 0) == nil)
        }
        let words = seen.withLock { $0 }.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        #expect(words == ["--session", "--service", "sshd", "--rhost", "x\nserver=https://evil", "--", "server=https://a:1"],
                "a remote host holding a line break stays one argument")
    }

    /// An agent that does not welcome the session (busy, settings it cannot serve): the
    /// client is started, as without an agent.
    @Test func anAgentThatDoesNotWelcomeTheSessionLeavesItToTheClient() throws {
        try withAgent(welcome: false, answer: "", hello: { _ in }) { (agent: String) throws in
            try withClient(answering("alice summary", "smartotp-helper 1\nnone\n")) { (client: String) throws in
                #expect(try SessionRecords(client: client, agent: agent).summary(try UserName("alice"), now: 0) == nil)
            }
        }
        try withClient(answering("alice summary", "smartotp-helper 1\nnone\n")) { (client: String) throws in
            #expect(try SessionRecords(client: client, agent: "/nonexistent/fleet.sock").summary(try UserName("alice"), now: 0) == nil,
                    "no agent there")
        }
    }
}
