import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: its ICU data would be most of the package
#else
import Foundation
#endif
import Glibc
import OTPCore
import SmartCard
import PCSC
import SmartOTPAuth
import SmartOTPSystem
import SmartOTPFleet
import TokenStore

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the installation: smartotp.conf, pcscd, readers, the store, the module, the PAM services, the fleet.",
        discussion: """
        One line per check: OK, WARN or FAIL, with the fix. Exit 1 when any check fails.
        It reads and never changes anything: a missing store is reported, not created.
        smartotp.conf is read as every login reads it (a malformed value there fails every
        login closed). On a fleet host (server= in smartotp.conf) it checks the host's TLS
        identity (tls_dir), when its certificate ends, and that each verifier answers.
        """)
    @Option(help: ArgumentHelp("The policy file every login reads.", valueName: "FILE")) var conf = ModuleConfig.defaultFile
    @OptionGroup var options: StoreOptions
    @Option(help: ArgumentHelp("The PAM configuration directory to read.", valueName: "DIR")) var pamDirectory = "/etc/pam.d"
    @Flag(help: "Print the directory PAM modules are installed in (where pam_unix.so is) and stop.")
    var moduleDirectory = false

    func run() throws {
        if moduleDirectory {
            guard let dir = pamModuleDirectory() else { throw Failure("cannot find the directory of pam_unix.so (is libpam-modules installed?)") }
            print(dir)
            return
        }
        var failed = false
        func line(_ level: String, _ text: String) {
            print("\(level + String(repeating: " ", count: max(0, 5 - level.count))) \(text)")
            if level == "FAIL" { failed = true }
        }
        var moduleConfig = ModuleConfig()
        do {
            let parsed = try ModuleConfig.load(arguments: [], file: conf)
            moduleConfig = parsed.config
            let exists = access(conf, F_OK) == 0
            line("OK", exists ? "\(conf) reads as every login reads it" : "\(conf) does not exist: the module's defaults and each service's arguments apply")
            for name in parsed.unknown { line("WARN", "\(name): unknown setting, ignored by every login (a typo?)") }
        } catch {
            line("FAIL", "\(error): every login through pam_smartotp fails closed (PAM_SERVICE_ERR) until it is fixed")
        }
        if !moduleConfig.servers.isEmpty { checkFleet(moduleConfig, line) }
        do {
            let context = try PCSCContext()
            line("OK", "pcscd is running")
            let readers = try context.readers()
            if readers.isEmpty { line("WARN", "no reader connected: only typed codes and the simple password will work") }
            for r in readers {
                if context.cardPresent(in: r) {
                    if let info = try? OATHSession(transport: context.connect(reader: r)).select() {
                        line("OK", "reader '\(r)': card \(info.deviceID) with the OATH applet \(info.versionString)")
                    } else {
                        line("WARN", "reader '\(r)': the card has no OATH applet")
                    }
                } else {
                    line("OK", "reader '\(r)': no card in it")
                }
            }
        } catch CardError.noService {
            line("WARN", "pcscd is not running: taps will not work (fix: apt-get install pcscd; systemctl start pcscd.socket)")
        } catch {
            line("WARN", "PC/SC: \(error)")
        }
        let store = try options.local()
        // Read only: check never creates the store, so a typo shows up here as it would
        // at login (PAM_AUTHINFO_UNAVAIL), not as an empty store.
        do {
            let users = try store.list()
            var bad = 0
            var shared: [String] = []
            for u in users {
                do {
                    // A card enrolled before tap credentials of their own: its one credential
                    // answers taps and gives phone codes, so a host that sends it the coming
                    // time steps during a tap gets codes it can type.
                    if let r = try store.read(u) {
                        for t in r.tokens where t.kind == .card && !t.tapOnly { shared.append("\(u.value)/\(t.id)") }
                    }
                } catch { bad += 1; line("FAIL", "\(error)") }
            }
            if !shared.isEmpty {
                line("WARN", "\(shared.count) card(s) share one credential between taps and typed codes: \(shared.prefix(10).joined(separator: " "))\(shared.count > 10 ? " …" : "") (a host a card is tapped on can ask it for future codes; fix: smartotp enroll USER --card again, then smartotp remove USER --token OLD)")
            }
            line(bad == 0 ? "OK" : "FAIL", "store \(store.root): \(users.count) user(s), \(bad) unreadable")
            let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: store.root + "/users")) ?? [])
                .filter { $0.hasPrefix(".") && $0.contains(".tmp") }.sorted()
            if !leftovers.isEmpty {
                line("WARN", "\(leftovers.count) temporary file(s) a killed writer left in \(store.root)/users: \(leftovers.prefix(5).joined(separator: " ")) (fix: remove them; records are never partial)")
            }
        } catch {
            line("FAIL", "\(error)")
        }
        if let dir = pamModuleDirectory() {
            let path = "\(dir)/pam_smartotp.so"
            if FileManager.default.fileExists(atPath: path) {
                line("OK", "module installed at \(path)")
            } else {
                line("FAIL", "module not found at \(path) (fix: ./install.sh)")
            }
        } else {
            line("WARN", "cannot find where PAM modules live (no pam_unix.so)")
        }
        let stacks = PamStacks(directory: pamDirectory)
        let using = stacks.servicesUsingSmartOTP().filter { $0.service != "smartotp-auth" }
        if using.isEmpty {
            line("WARN", "no \(pamDirectory) service uses pam_smartotp yet (pam-auth-update --enable smartotp puts it in common-auth; or @include smartotp-auth in a service, or install.sh --enable SERVICE)")
        } else {
            line("OK", "services using pam_smartotp: \(using.map { $0.service + ($0.viaInclude ? " (through an include)" : "") }.joined(separator: ", "))")
        }
        for s in using where s.authLines > 1 {
            line("WARN", "\(pamDirectory)/\(s.service) runs pam_smartotp \(s.authLines) times in its auth stack (two prompts; remove one, e.g. a direct line beside @include smartotp-auth)")
        }
        if let driver = vpcdDriverConfigured() {
            line("WARN", "the system's pcscd loads the virtual reader driver vpcd (\(driver)): anyone who can reach its TCP port can insert a card; on a production machine: apt-get purge vsmartcard-vpcd")
        }
        if failed { throw ExitCode(1) }
    }

    /// A fleet host: its TLS identity, when its certificate ends, and each verifier's answer.
    func checkFleet(_ config: ModuleConfig, _ line: (String, String) -> Void) {
        let dir = config.tlsDir
        var complete = true
        for f in ["ca.pem", "cert.pem", "key.pem"] where access("\(dir)/\(f)", R_OK) != 0 {
            line("FAIL", "\(dir)/\(f) is missing: this host has no fleet identity (fix: smartotp join, docs/fleet.md)")
            complete = false
        }
        guard complete else { return }
        var st = stat()
        if stat("\(dir)/key.pem", &st) == 0, st.st_uid != 0 || st.st_mode & 0o077 != 0 {
            line("FAIL", "\(dir)/key.pem must be root's and 0600 (the fleet client refuses it otherwise)")
        }
        if let (begins, ends) = try? HostIdentity.dates("\(dir)/cert.pem") {
            let now = Int64(time(nil))
            let due = begins + (ends - begins) * 2 / 3
            if now >= ends {
                line("FAIL", "the host certificate \(dir)/cert.pem ended on \(CivilTime.format(ends)): every fleet login fails (fix: smartotp hosts add, then smartotp join)")
            } else if now >= due {
                line("WARN", "the host certificate ends on \(CivilTime.format(ends)), and renewal was due from \(CivilTime.format(due)) (fix: smartotp renew; systemctl enable --now smartotp-renew.timer)")
            } else {
                line("OK", "the host certificate is valid until \(CivilTime.format(ends)) (renewal from \(CivilTime.format(due)))")
            }
        } else {
            line("WARN", "cannot read the dates of \(dir)/cert.pem (is openssl installed?)")
        }
        guard let urls = ServerURL.list(config.servers.joined(separator: ",")) else {
            line("FAIL", "server= is not a list of https://HOST[:PORT]")
            return
        }
        for url in urls {
            do {
                let r = try RemoteAdmin(servers: [url], tlsDirectory: dir, timeoutSeconds: 5).call("GET", FleetAPI.healthPath, anyStatus: true)
                if r.status == 200 { line("OK", "verifier \(url) answers this host") }
                else { line("FAIL", "verifier \(url) answered \(r.status): \(r.text.trimmingSpaces())") }
            } catch {
                line("FAIL", "verifier \(url): \(error)")
            }
        }
    }

    /// The reader.conf file that makes the system's pcscd load vpcd, if any.
    func vpcdDriverConfigured() -> String? {
        let dir = "/etc/reader.conf.d"
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() {
            let text = (try? String(contentsOfFile: "\(dir)/\(name)", encoding: .utf8)) ?? ""
            let active = text.split(separator: "\n").contains { l in
                let t = String(l).trimmingSpaces()
                return !t.hasPrefix("#") && t.hasPrefix("LIBPATH") && t.contains("vpcd")
            }
            if active { return "\(dir)/\(name)" }
        }
        return nil
    }
}
