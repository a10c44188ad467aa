import ArgumentParser
import Foundation
import SmartCard
import SmartOTPAuth
import TokenStore

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the installation: pcscd, readers, the store, the module, the PAM services.",
        discussion: "One line per check: OK, WARN or FAIL, with the fix. Exit 1 when any check fails.")
    @OptionGroup var options: StoreOptions

    func run() throws {
        var failed = false
        func line(_ level: String, _ text: String) {
            print("\(level.padding(toLength: 5, withPad: " ", startingAt: 0)) \(text)")
            if level == "FAIL" { failed = true }
        }
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
        let store = options.open()
        do {
            try store.prepare()
            let users = try store.list()
            var bad = 0
            for u in users {
                do { _ = try store.read(u) } catch { bad += 1; line("FAIL", "\(error)") }
            }
            line(bad == 0 ? "OK" : "FAIL", "store \(store.root): \(users.count) user(s), \(bad) unreadable")
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
        let services = (try? FileManager.default.contentsOfDirectory(atPath: "/etc/pam.d")) ?? []
        let using = services.sorted().filter {
            ((try? String(contentsOfFile: "/etc/pam.d/\($0)", encoding: .utf8)) ?? "").contains("pam_smartotp.so")
        }
        line(using.isEmpty ? "WARN" : "OK", using.isEmpty ? "no /etc/pam.d service uses pam_smartotp yet (see install.sh --enable)" :
                "services using pam_smartotp: \(using.joined(separator: ", "))")
        if failed { throw ExitCode(1) }
    }
}
