import OTPCore
import CPAM
internal import CPOSIX
import SmartOTPAuth
import SmartOTPSystem
import POSIX
import TokenStore
import Verifier

// The PAM entry points: a few lines each. Build the context, run the flow, map the
// outcome to a PAM code, log. Nothing here may trap: sshd and sudo run this code.

public typealias PamArgv = UnsafeMutablePointer<UnsafePointer<CChar>?>?

/// The module arguments, split at their first '=' straight from PAM's C strings (each
/// bounded as `PamHandle.boundedString` bounds it; NULL entries skipped).
func moduleArguments(_ argc: Int32, _ argv: PamArgv) -> [ModuleConfig.Argument] {
    guard let argv, argc > 0 else { return [] }
    var out: [ModuleConfig.Argument] = []
    out.reserveCapacity(Int(min(argc, 256)))
    for i in 0..<Int(min(argc, 256)) {
        guard let p = argv[i] else { continue }
        let length = PamHandle.boundedLength(p, 1024 + 1)
        out.append(p.withMemoryRebound(to: UInt8.self, capacity: length) {
            ModuleConfig.Argument(bytes: UnsafeBufferPointer(start: $0, count: length))
        })
    }
    return out
}

/// The policy file, then the arguments over it; logs unknown names; nil (after logging)
/// when the file cannot be trusted or a value is malformed.
func loadConfig(_ pam: PamHandle, _ arguments: [ModuleConfig.Argument]) -> ModuleConfig? {
    do {
        let parsed = try ModuleConfig.load(arguments: arguments)
        for name in parsed.unknown { pam.syslog(LOG_ERR, msg("unknown module argument ignored: \(ConfigError.printable(name))")) }
        return parsed.config
    } catch {
        pam.syslog(LOG_ERR, msg("\(error.description); refusing to authenticate"))
        return nil
    }
}

/// The PAM user as the name service spells it, or nil (logged). Records are keyed by
/// `pw_name`: a name that resolves to another spelling (`ALICE` through a case-insensitive
/// SSSD, `alice@domain`) would find no record and pass `nullok` without a second factor,
/// and a name that does not resolve is nobody's. Both are PAM_USER_UNKNOWN.
func canonicalUser(_ pam: PamHandle, _ raw: String, _ step: StaticString) -> (name: String, uid: UInt32)? {
    guard let entry = Users.lookup(raw) else {
        pam.syslog(LOG_NOTICE, msg("\(step): user=\(ConfigError.printable(raw)) is not known to the name service; refused"))
        return nil
    }
    guard entry.name.equals(raw) else {
        pam.syslog(LOG_NOTICE, msg("\(step): user=\(ConfigError.printable(raw)) is spelled \(ConfigError.printable(entry.name)) by the name service; refused (records are kept under that spelling)"))
        return nil
    }
    return entry
}

/// `groups=` (GroupPolicy): false when the user is not to be asked (logged); the module
/// then answers PAM_IGNORE. Anything the name service cannot tell is logged, and asks.
func inScope(_ pam: PamHandle, _ config: ModuleConfig, _ user: String, _ step: StaticString) -> Bool {
    guard !config.groups.isEmpty else { return true }
    switch GroupPolicy.decide(config.groups, memberOf: Users.groupIDs(of: user), gid: { Users.groupID(of: $0) }) {
    case .ask(let note):
        if let note { pam.syslog(LOG_WARNING, msg("\(step): user=\(user): \(note)")) }
        return true
    case .skip(let why):
        pam.syslog(LOG_INFO, msg("\(step): user=\(user) not asked by groups= (\(why)); ignored"))
        return false
    }
}

/// The PAM code for each outcome: one line each, documented in pam_smartotp(8).
func pamCode(_ outcome: Outcome) -> Int32 {
    switch outcome {
    case .success: return PAM_SUCCESS
    case .failure: return PAM_AUTH_ERR
    case .locked: return PAM_MAXTRIES
    case .userUnknown: return PAM_USER_UNKNOWN
    case .ignore: return PAM_IGNORE
    case .unavailable: return PAM_AUTHINFO_UNAVAIL
    case .conversationError: return PAM_CONV_ERR
    case .serviceError: return PAM_SERVICE_ERR
    }
}

@_cdecl("pam_sm_authenticate")
public func pam_sm_authenticate(_ handle: OpaquePointer?, _ flags: Int32, _ argc: Int32, _ argv: PamArgv) -> Int32 {
    guard let handle else { return PAM_SERVICE_ERR }
    let pam = PamHandle(raw: handle)
    let arguments = moduleArguments(argc, argv)
    guard let config = loadConfig(pam, arguments) else { return PAM_SERVICE_ERR }
    guard let user = pam.user() else { return PAM_USER_UNKNOWN }
    // A name that is no valid record key is refused (and logged) by the flow itself.
    var known: (name: String, uid: UInt32)?
    if (try? UserName(user)) != nil {
        guard let entry = canonicalUser(pam, user, "auth") else { return PAM_USER_UNKNOWN }
        guard inScope(pam, config, entry.name, "auth") else { return PAM_IGNORE }
        known = entry
    }
    let service = pam.item(PAM_SERVICE) ?? "?"
    let remoteHost = pam.item(PAM_RHOST) ?? ""
    var flow = LoginFlow(
        config: config,
        // Root reads the records itself; a caller running as the user (a screen locker)
        // asks the setuid helper, which checks only that user's own record, with root's policy.
        records: SystemRecords(config, service: service, remoteHost: remoteHost, known: known, arguments: arguments),
        prompter: PamConversation(pam: pam, silent: UInt32(bitPattern: flags) & UInt32(PAM_SILENT) != 0),
        reader: PCSCTapReader(),
        clock: SystemClock(),
        audit: PamAudit(pam: pam, debugEnabled: config.debug),
        previousToken: config.tryFirstPass || config.useFirstPass ? pam.item(PAM_AUTHTOK) : nil)
    flow.remoteHost = remoteHost
    flow.window = config.windowPrompts ?? isWindow(pam)
    return pamCode(flow.authenticate(user: user, service: service))
}

/// Whether the application is a window (`prompts=auto`): it set PAM_XDISPLAY, or a
/// PAM_TTY that names an X display (":0", as xscreensaver and LightDM do).
func isWindow(_ pam: PamHandle) -> Bool {
    if let display = pam.item(PAM_XDISPLAY), !display.isEmpty { return true }
    return pam.item(PAM_TTY)?.utf8.first == UInt8(ascii: ":")
}

/// An auth module has no credentials to set.
@_cdecl("pam_sm_setcred")
public func pam_sm_setcred(_ handle: OpaquePointer?, _ flags: Int32, _ argc: Int32, _ argv: PamArgv) -> Int32 {
    PAM_SUCCESS
}

/// Refuses a locked user (so a lock also stops logins that skipped our auth step, e.g.
/// SSH keys alone); users without a record are not our business (PAM_IGNORE).
@_cdecl("pam_sm_acct_mgmt")
public func pam_sm_acct_mgmt(_ handle: OpaquePointer?, _ flags: Int32, _ argc: Int32, _ argv: PamArgv) -> Int32 {
    guard let handle else { return PAM_SERVICE_ERR }
    let pam = PamHandle(raw: handle, step: "account")
    let arguments = moduleArguments(argc, argv)
    guard let config = loadConfig(pam, arguments) else { return PAM_SERVICE_ERR }
    guard let raw = pam.user(), let entry = canonicalUser(pam, raw, "account"), let user = try? UserName(entry.name) else { return PAM_USER_UNKNOWN }
    guard inScope(pam, config, entry.name, "account") else { return PAM_IGNORE }
    let summary: RecordSummary?
    do { summary = try SystemRecords(config, service: pam.item(PAM_SERVICE) ?? "", known: entry, arguments: arguments).summary(user, now: SystemClock().now()) } catch {
        pam.syslog(LOG_ERR, "account: " + error.description)
        return PAM_AUTHINFO_UNAVAIL
    }
    guard let summary else { return PAM_IGNORE }
    if summary.lock.isLocked {
        pam.syslog(LOG_NOTICE, msg("account: user=\(user) locked after \(summary.failures) failures"))
        PamConversation(pam: pam, silent: UInt32(bitPattern: flags) & UInt32(PAM_SILENT) != 0).error("Your account is locked after too many failed attempts.")
        return PAM_PERM_DENIED
    }
    return PAM_SUCCESS
}
