import ArgumentParser
import Foundation
import SmartCard
import SmartOTPAuth
import TokenStore

/// What the signal handler must undo if the demo is interrupted (async-signal-safe data only).
nonisolated(unsafe) var demoChildren: [pid_t] = [0, 0]
nonisolated(unsafe) var demoServicePath: UnsafeMutablePointer<CChar>?

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run real PAM logins with the virtual card, on a machine without a reader.",
        discussion: """
        Starts pcscd with vsmartcard's vpcd driver in a private network namespace (or uses a
        running pcscd that has the "Virtual PCD" readers), puts the virtual card
        (smartotp-card) in the reader, enrolls the user "demo" in a temporary store, and runs
        pamtester through the installed pam_smartotp.so with a temporary service:

          1. a tap on the card logs in;
          2. the card is taken away: the tap times out and the simple password logs in;
          3. a wrong one-time code is refused.

        Everything it starts or writes is removed at the end, also on Ctrl-C. Needs root.
        EXIT STATUS: 0 when the three steps end as expected.
        """
    )

    @Option(help: "The module to test (default: pam_smartotp.so next to pam_unix.so).")
    var module: String?

    @Option(help: "Seconds to wait for the tap in step 2.")
    var timeout = 5

    func run() throws {
        guard getuid() == 0 else { throw Failure("the demo starts pcscd and writes a PAM service: run it as root") }
        let modulePath = try module ?? installedModule()
        guard FileManager.default.fileExists(atPath: modulePath) else { throw Failure("no module at \(modulePath) (run ./install.sh)") }
        for tool in ["/usr/bin/pamtester", "/usr/sbin/pcscd"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw Failure("\(tool) is missing (apt-get install pamtester pcscd vsmartcard-vpcd)")
        }
        let here = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        let cardTool = here.appendingPathComponent("smartotp-card").path
        let me = here.appendingPathComponent("smartotp").path
        // A plain path: PAM module arguments are split at spaces.
        var template = Array("/tmp/smartotp-demo-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw Failure("cannot make a temporary directory") }
        let work = URL(fileURLWithPath: String(cString: made))
        let store = work.appendingPathComponent("store").path
        let service = "smartotp-demo-\(getpid())"
        let servicePath = "/etc/pam.d/\(service)"
        demoServicePath = strdup(servicePath)
        installSignalCleanup()
        var pcscd: Process?
        var card: Process?
        defer {
            if let card { stopProcess(card) }
            if let pcscd { stopProcess(pcscd) }
            unlink(servicePath)
            try? FileManager.default.removeItem(at: work)
        }

        say("Step 0: a reader and a card")
        var netns: String?
        if runningPCSCD() {
            guard ((try? PCSCContext().readers(matching: "Virtual PCD")) ?? []).isEmpty == false else {
                throw Failure("a pcscd is running without the vpcd driver: install vsmartcard-vpcd and restart pcscd, or stop it")
            }
            say("  using the running pcscd, which has the virtual readers")
        } else {
            let p = try launch("/usr/bin/unshare", ["--net", "sh", "-c", "ip link set lo up && exec pcscd --foreground"], quiet: true)
            pcscd = p
            demoChildren[0] = p.processIdentifier
            netns = "/proc/\(p.processIdentifier)/ns/net"
            try waitFor("pcscd") { FileManager.default.fileExists(atPath: "/run/pcscd/pcscd.comm") && (try? PCSCContext().readers().isEmpty) == false }
            say("  started pcscd (pid \(p.processIdentifier)) with the vpcd driver, in a private network namespace")
        }
        func insertCard() throws -> Process {
            let args = ["--state", work.appendingPathComponent("card.state").path]
            let p = netns.map { try? launch("/usr/bin/nsenter", ["--net=\($0)", cardTool] + args, quiet: true) } ?? (try? launch(cardTool, args, quiet: true))
            guard let p else { throw Failure("cannot start \(cardTool)") }
            demoChildren[1] = p.processIdentifier
            try waitFor("the virtual card") { cardPresent() }
            return p
        }
        card = try insertCard()
        say("  the virtual card is in the reader \"Virtual PCD 00 00\"")

        try runTool(me, ["enroll", "demo", "--force", "--card", "--reader", "Virtual PCD 00 00", "--store", store])
        try runTool(me, ["passwd", "demo", "--force", "--password-stdin", "--store", store], input: "2468\n")
        say("  enrolled user \"demo\" on the card, simple password 2468, store \(store)")
        let stack = "auth required \(modulePath) store=\(store) timeout=\(timeout) reader=Virtual\n"
        try stack.write(toFile: servicePath, atomically: true, encoding: .utf8)
        say("  PAM service \(servicePath): \(stack.trimmingCharacters(in: .newlines))")

        say("\nStep 1: log in with a tap (pamtester \(service) demo authenticate)")
        let tap = try pamtester(service, input: "")
        guard tap == 0 else { throw Failure("the tap login failed (pamtester exit \(tap))") }

        say("\nStep 2: the card is taken away; after \(timeout) s the simple password is asked")
        if let c = card { stopProcess(c); card = nil; demoChildren[1] = 0 }
        try waitFor("the card to leave") { !cardPresent() }
        let fallback = try pamtester(service, input: "\n2468\n")
        guard fallback == 0 else { throw Failure("the password fallback failed (pamtester exit \(fallback))") }

        say("\nStep 3: a wrong one-time code is refused")
        let wrong = try pamtester(service, input: "123456\n")
        guard wrong != 0 else { throw Failure("a wrong code was accepted") }

        say("\nDemo complete: tap accepted, password fallback accepted, wrong code refused. Cleaning up.")
    }

    func say(_ s: String) { print(s); fflush(nil) }

    func installedModule() throws -> String {
        guard let dir = pamModuleDirectory() else { throw Failure("cannot find where PAM modules live; give --module PATH") }
        return "\(dir)/pam_smartotp.so"
    }

    func runningPCSCD() -> Bool {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.contains { pid in
            guard Int(pid) != nil, let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8) else { return false }
            return comm.trimmingCharacters(in: .whitespacesAndNewlines) == "pcscd"
                && !((try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? "").contains(") Z ")
        }
    }

    func cardPresent() -> Bool {
        (try? PCSCContext())?.cardPresent(in: "Virtual PCD 00 00") ?? false
    }

    func launch(_ path: String, _ args: [String], quiet: Bool) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        if quiet {
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
        }
        try p.run()
        return p
    }

    func stopProcess(_ p: Process) {
        guard p.isRunning else { return }
        p.terminate()
        for _ in 0..<50 where p.isRunning { usleep(50_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    func waitFor(_ what: String, _ condition: () -> Bool) throws {
        for _ in 0..<100 {
            if condition() { return }
            usleep(100_000)
        }
        throw Failure("timed out waiting for \(what)")
    }

    func runTool(_ path: String, _ args: [String], input: String? = nil) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let pipe = Pipe()
        if input != nil { p.standardInput = pipe }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        if let input {
            pipe.fileHandleForWriting.write(Data(input.utf8))
            try? pipe.fileHandleForWriting.close()
        }
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw Failure("\(path) \(args.joined(separator: " ")) failed") }
    }

    /// Runs pamtester with `input` on its standard input; its messages go to the terminal.
    func pamtester(_ service: String, input: String) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/pamtester")
        p.arguments = ["-v", service, "demo", "authenticate"]
        let pipe = Pipe()
        p.standardInput = pipe
        try p.run()
        pipe.fileHandleForWriting.write(Data(input.utf8))
        try? pipe.fileHandleForWriting.close()
        p.waitUntilExit()
        fflush(nil)
        return p.terminationStatus
    }

    func installSignalCleanup() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in
            for pid in demoChildren where pid > 0 { kill(pid, SIGTERM) }
            if let path = demoServicePath { unlink(path) }
            _exit(130)
        }
        sigaction(SIGINT, &action, nil)
        sigaction(SIGTERM, &action, nil)
    }
}
