// smartotp-chkotp — the setuid-root helper for callers that run as the user.
//
// Screen lockers run PAM as the user, who cannot read the root-owned 0600 records. As
// unix_chkpwd does for pam_unix, this small program checks the calling user's own
// record, and nothing else:
//
//     smartotp-chkotp USER summary|challenge|access|code|password|tap   (arguments on stdin)
//
//   (`offline`, a fleet host's report of its offline logins, is the fleet client's to send
//   and refused here.)
//
// - USER must be the caller's own name (real uid), unless the caller is root.
// - The secret comes on standard input, never on the command line.
// - The store and the lock policy come from root's /etc/smartotp/smartotp.conf, the file
//   the module reads first too (ModuleConfig.load), never from the caller, so the lockout
//   holds even for a user who runs this program by hand; each refusal also costs a second.
// - Whatever the caller set up is dropped first: descriptors other than 0-2, resource
//   limits (where root may raise them), signal dispositions and mask, the caller's group
//   and real uid (so the caller can no longer signal it), the environment. A deadline
//   (alarm) bounds how long a caller can keep it waiting for the request.
// - Every attempt is counted on disk before its verdict exists; when the count cannot be
//   written, no verdict is printed at all.
// - It prints one answer in HelperProtocol's format. Exit 0; 1 on error; 2 on misuse.
import CHelper
import OTPCore
import POSIX
import SmartOTPAuth
import SmartOTPSystem
import TokenStore
import Verifier


/// Refuses, saying why to syslog (the module points our standard error at /dev/null, so
/// nothing reaches the terminal of the program that asked) and to standard error (for an
/// administrator running it by hand).
func fail(_ text: String, _ code: Int32 = 1) -> Never {
    text.withCString { helper_syslog(code == 2 ? 1 : 0, $0) }
    SetuidProcess.write(2, Array(msg("smartotp-chkotp: \(text)\n").utf8))
    SetuidProcess.exit(code)
}

/// How long the helper may take to be handed its request, and then to decide (beyond the
/// fleet's own timeout): a caller who never sends it cannot park a process of root's,
/// which they could not kill once it took root as its real uid. SIGALRM is at its default
/// (dropInheritedState), so the deadline ends the process; a count already written stays.
enum Deadline {
    static let request: UInt32 = 10
    static let decision: UInt32 = 15
}

func readInput() -> [String] {
    guard var bytes = (try? FileDescriptor(rawValue: 0).readAll("standard input", limit: WireLimits.request)) ?? nil else {
        fail("request too long or unreadable", 2)
    }
    defer { ConstantTime.wipe(&bytes) }
    return HelperProtocol.lines(bytes)
}

/// Prints the answer and leaves. A refusal costs the caller a second, after the answer.
func answer(_ text: String, slow: Bool = false) -> Never {
    SetuidProcess.write(1, Array(text.utf8))
    SetuidProcess.exit(0, after: slow ? 1 : 0)
}

/// The whole run: who asks, for whom, what; then one answer.
func run(_ arguments: [String], caller: UInt32) -> Never {
    guard arguments.count == 3 else { fail("usage: smartotp-chkotp USER summary|challenge|access|code|password|tap", 2) }
    guard Users.effectiveUID == 0 else { fail("not installed setuid root (chmod 4755, owner root)") }
    guard let callerName = Users.name(of: caller) else { fail(msg("the calling uid \(caller) has no name")) }
    guard caller == 0 || arguments[1].equals(callerName) else { fail("may check only the caller's own record", 2) }
    let user: UserName
    do throws(StoreError) { user = try UserName(arguments[1]) } catch { fail(error.description, 2) }
    guard let operation = HelperProtocol.Operation.named(arguments[2]), operation != .offline else {
        fail("unknown operation " + ConfigError.printable(String(arguments[2].prefix(16))), 2)
    }
    // Root's settings only: nothing from the caller.
    let config: ModuleConfig
    do throws(ConfigError) { config = try ModuleConfig.load(arguments: []).config } catch {
        fail(error.description)
    }
    let now = Clocks.unixTime()
    let request: HelperProtocol.Request
    do throws(HelperProtocol.ParseError) { request = try HelperProtocol.request(operation, lines: readInput()) } catch {
        fail(error.description, 2)
    }
    SetuidProcess.deadline(seconds: UInt32(clamping: config.serverTimeout) + Deadline.decision)
    do throws(RecordError) {
        // With server= in root's settings the fleet client asks the verifiers, as root;
        // else the store here. Either way the lock is decided by root's policy.
        let reply = config.servers.isEmpty
            ? try HelperProtocol.answer(request, for: user, by: LocalRecords.system(store: FileStore(root: config.store), policy: config.policy), now: now)
            : try HelperProtocol.answer(request, for: user, by: SessionRecords(client: config.client ?? Installation.fleetClient, agent: config.agent, serverTimeout: config.serverTimeout), now: now)
        var counted = false
        if case .perform = request { counted = true }
        answer(HelperProtocol.encode(reply), slow: caller != 0 && counted && !reply.accepted)
    } catch {
        // Includes a failure count that could not be written: no verdict is given.
        fail(error.description)
    }
}

/// The entry point. The caller's real uid is read before anything else, then everything
/// the caller handed over is dropped. The arguments come from the C side (Embedded Swift
/// has no CommandLine).
@main
struct Helper {
    static func main() {
        let caller = Users.realUID
        SetuidProcess.closeInheritedDescriptors()
        SetuidProcess.deadline(seconds: Deadline.request)
        do throws(SetuidProcess.Refusal) { try SetuidProcess.dropInheritedState() } catch { fail(error.description) }
        var arguments: [String] = []
        for i in 0..<min(Int(helper_argc()), 16) {
            if let p = helper_argv(Int32(i)) { arguments.append(String(cString: p)) }
        }
        run(arguments, caller: caller)
    }
}
