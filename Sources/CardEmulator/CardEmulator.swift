import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: its ICU data would be most of the package
#else
import Foundation
#endif
import Glibc
import VirtualCard

/// Signals that "remove" and "tap" the card: SIGUSR1 toggles whether it is in the field.
nonisolated(unsafe) var toggleRequested: sig_atomic_t = 0
nonisolated(unsafe) var stopRequested: sig_atomic_t = 0

/// The virtual card's command: `smartotp-card` in a build folder (its own small program),
/// and in the smartotp package a link to `smartotp`, which runs this when called by that
/// name: one copy of the Swift runtime in the package, not two.
public struct SmartOTPCard: ParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "smartotp-card",
        abstract: "A virtual smart OTP card: the YKOATH applet, plugged into pcscd through vsmartcard's vpcd.",
        discussion: """
        The card connects to vpcd (the virtual reader driver pcscd loads from
        /etc/reader.conf.d/vpcd) on 127.0.0.1:35963 and stays in the reader while it runs.
        Its credentials and access code live in the --state file, written atomically after
        every change. ykman, smartotp and pam_smartotp see it as a YubiKey's OATH applet.

        Stop the process to take the card away; start it again to tap. SIGUSR1 toggles the
        card in and out of the field without stopping. SIGTERM/SIGINT end it.

        EXIT STATUS: 0 when stopped by a signal, 1 on a bad state file or a lost vpcd link.
        """
    )

    @Option(help: "The card's state file (created with a fresh applet when missing).")
    var state: String

    @Option(help: "vpcd's TCP port: 35963 is the first virtual reader, 35964 the second.")
    var port: UInt16 = 35963

    @Option(help: "vpcd's address (IPv4).")
    var host: String = "127.0.0.1"

    @Option(help: "Answer to a touch-required credential: yes (touched) or no (no touch in time).")
    var touch: String = "yes"

    @Flag(help: "Exit when vpcd closes the link instead of reconnecting.")
    var once = false

    @Option(help: ArgumentHelp("Leave the reader after answering N APDUs in a session (a card pulled away mid-exchange; for tests).", valueName: "N"))
    var vanishAfter: Int?

    @Flag(help: "Answer every APDU with random bytes (a broken card; for tests).")
    var garbage = false

    public func validate() throws {
        guard touch == "yes" || touch == "no" else { throw ValidationError("--touch must be yes or no") }
    }

    public func run() throws {
        let applet = OATHApplet()
        if FileManager.default.fileExists(atPath: state) {
            let text = try String(contentsOfFile: state, encoding: .utf8)
            do { try applet.restore(text) } catch { throw ValidationError("\(state): \(error)") }
        } else {
            try save(applet)
        }
        let touched = touch == "yes"
        applet.touchProvider = { touched }
        installSignals()
        var inField = true
        while stopRequested == 0 {
            if !inField {
                pause()
                if toggleRequested != 0 { toggleRequested = 0; inField = true }
                continue
            }
            let link: VPCDLink
            do { link = try VPCDLink(host: host, port: port) } catch {
                if once { throw ExitCode(1) }
                usleep(200_000)
                continue
            }
            say("smartotp-card: in reader on \(host):\(port)\n")
            applet.reset()
            var answered = 0
            serve: while stopRequested == 0 {
                let message = try link.receive()
                switch message {
                case .interrupted:
                    if toggleRequested != 0 { toggleRequested = 0; inField = false; break serve }
                case .closed:
                    if once { throw ExitCode(1) }
                    break serve
                case .control(let c):
                    switch c {
                    case .getATR: try link.send(VPCDLink.atr)
                    case .reset, .powerOn, .powerOff: applet.reset()
                    case .none: break
                    }
                case .apdu(let apdu):
                    if let limit = vanishAfter, answered >= limit { break serve }
                    answered += 1
                    if garbage {
                        try link.send((0..<Int.random(in: 0...300)).map { _ in UInt8.random(in: 0...255) })
                        continue
                    }
                    let response = applet.process(apdu)
                    if applet.isDirty {
                        try save(applet)
                        applet.isDirty = false
                    }
                    try link.send(response)
                }
            }
            if !inField { say("smartotp-card: removed from the reader\n") }
        }
    }

    /// Writes the state file atomically (temp, fsync, rename), mode 0600.
    func save(_ applet: OATHApplet) throws {
        let temp = state + ".tmp"
        guard FileManager.default.createFile(atPath: temp, contents: Data(applet.serialise().utf8), attributes: [.posixPermissions: 0o600]) else {
            throw ValidationError("cannot write \(temp)")
        }
        let fd = open(temp, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(temp, state) == 0 else { throw ValidationError("cannot write \(state): \(String(cString: strerror(errno)))") }
    }

    func installSignals() {
        var toggle = sigaction()
        toggle.__sigaction_handler.sa_handler = { _ in toggleRequested = 1 }
        toggle.sa_flags = 0  // no SA_RESTART: a blocked recv returns EINTR
        sigaction(SIGUSR1, &toggle, nil)
        var stop = sigaction()
        stop.__sigaction_handler.sa_handler = { _ in stopRequested = 1 }
        stop.sa_flags = 0
        sigaction(SIGTERM, &stop, nil)
        sigaction(SIGINT, &stop, nil)
    }
}

/// A line on standard error (write(2): no stdio stream shared between threads).
func say(_ text: String) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
