import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: its ICU data would be most of the package
#else
import Foundation
#endif
import Glibc

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run real PAM logins with the virtual card, on a machine without a reader.",
        discussion: """
        Starts pcscd with vsmartcard's vpcd driver in a private network namespace, puts the
        virtual card (smartotp-card) in the reader, enrolls the system's user "nobody" in a
        temporary store, and runs pamtester on a pseudo-terminal through the installed
        pam_smartotp.so with a temporary service:

          1. a tap on the card logs in;
          2. the card is taken away: the tap times out and the simple password logs in;
          3. a wrong one-time code is refused.

        Everything it starts or writes is removed at the end, also on Ctrl-C. Needs root and
        the test packages (./install.sh --demo). The steps are the script demo.sh, installed
        with the card bench it shares with the tests in /usr/local/lib/smartotp.
        EXIT STATUS: 0 when the three steps end as expected.
        """
    )

    @Option(help: "The module to test (default: pam_smartotp.so next to pam_unix.so).")
    var module: String?

    @Option(help: "Seconds to wait for the tap in step 2.")
    var timeout = 5

    @Option(help: ArgumentHelp("The demo script (default: the installed one, or the checkout's).", valueName: "PATH"))
    var script: String?

    func validate() throws {
        guard (1...60).contains(timeout) else { throw ValidationError("--timeout must be 1 to 60 seconds") }
    }

    func run() throws {
        guard let me = ownPath() else { throw Failure("cannot tell where this program is") }
        let here = parentFolder(me)
        // Installed (PREFIX/bin → PREFIX/lib/smartotp), or run from a build folder of the
        // checkout (.build/<triple>/release → scripts/).
        var candidates = [script, "\(parentFolder(here))/lib/smartotp/demo.sh"].compactMap { $0 }
        var dir = here
        for _ in 0..<4 {
            dir = parentFolder(dir)
            candidates.append("\(dir)/scripts/demo.sh")
        }
        guard let path = candidates.first(where: { access($0, X_OK) == 0 }) else {
            throw Failure("cannot find demo.sh (looked in \(candidates.joined(separator: ", "))); give --script PATH")
        }
        var environment: [String: String] = [:]
        var entry = environ
        while let e = entry.pointee {
            let pair = String(cString: e).split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if pair.count == 2 { environment[String(pair[0])] = String(pair[1]) }
            entry += 1
        }
        environment["SMARTOTP"] = me
        environment["CARD_TOOL"] = here + "/smartotp-card"
        environment["TIMEOUT"] = String(timeout)
        if let module { environment["MODULE"] = module }
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        fflush(nil)
        execve(path, argv, envp)
        throw Failure("cannot run \(path): \(String(cString: strerror(errno)))")
    }
}
