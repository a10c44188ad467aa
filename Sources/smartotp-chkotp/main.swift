// smartotp-chkotp — the setuid-root helper for callers that run as the user.
//
// Screen lockers run PAM as the user, who cannot read the root-owned 0600 records. As
// unix_chkpwd does for pam_unix, this small program checks the calling user's own
// record, and nothing else:
//
//     smartotp-chkotp USER summary|challenge|access|code|password|tap   (arguments on stdin)
//
// - USER must be the caller's own name (real uid), unless the caller is root.
// - The secret comes on standard input, never on the command line.
// - The store and the lock policy come from root's /etc/smartotp/smartotp.conf (module
//   argument syntax, one per line), never from the caller, so the lockout holds even
//   for a user who runs this program by hand; each refusal also costs one second.
// - Whatever the caller set up is dropped first: resource limits (where root may raise
//   them), signal dispositions and mask, the caller's group and real uid (so the caller
//   can no longer signal it), the environment.
// - Every attempt is counted on disk before its verdict exists; when the count cannot be
//   written, no verdict is printed at all.
// - It prints one answer in HelperProtocol's format. Exit 0; 1 on error; 2 on misuse.
#if canImport(Glibc)
import Glibc
#endif
import OTPCore
import SmartOTPAuth
import TokenStore

let configPath = "/etc/smartotp/smartotp.conf"
let maxInput = 8192

func fail(_ text: String, _ code: Int32 = 1) -> Never {
    let line = Array("smartotp-chkotp: \(text)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(code)
}

/// Undoes what a caller can hand a setuid program: limits, signals, group, real uid.
func dropInheritedState() {
    // Limits a caller could use to make a write fail half-way (RLIMIT_FSIZE), or to kill
    // us between the count and the verdict (RLIMIT_CPU): back to none where root may raise
    // them (CAP_SYS_RESOURCE; a container may withhold it), else up to the hard limit. A
    // limit that remains can only make the count fail to write, and then no verdict is
    // given at all. No core dumps: the memory holds secrets.
    for resource in [RLIMIT_FSIZE, RLIMIT_CPU, RLIMIT_DATA, RLIMIT_AS] {
        let r = __rlimit_resource_t(resource.rawValue)
        var unlimited = rlimit(rlim_cur: rlim_t.max, rlim_max: rlim_t.max)  // RLIM_INFINITY
        if setrlimit(r, &unlimited) != 0 {
            var current = rlimit()
            guard getrlimit(r, &current) == 0 else { fail("cannot read resource limits") }
            current.rlim_cur = current.rlim_max
            guard setrlimit(r, &current) == 0 else { fail("cannot reset resource limits") }
        }
    }
    var files = rlimit(rlim_cur: 1024, rlim_max: 1024)
    var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
    _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files)  // may exceed a lower hard limit: best effort
    guard setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore) == 0 else { fail("cannot disable core dumps") }
    // Ignored signals stay ignored across exec: reset every disposition, unblock all.
    var action = sigaction()
    action.__sigaction_handler.sa_handler = nil  // SIG_DFL
    sigemptyset(&action.sa_mask)
    for signal in 1..<Int32(65) where signal != SIGKILL && signal != SIGSTOP {
        _ = sigaction(signal, &action, nil)
    }
    // Except SIGXFSZ, which we ignore ourselves: a write over a remaining file-size limit
    // then fails with EFBIG, the temporary file is removed, and no verdict is given,
    // instead of a kill half-way through the write.
    _ = signal(SIGXFSZ, SIG_IGN)
    var none = sigset_t()
    sigemptyset(&none)
    _ = sigprocmask(SIG_SETMASK, &none, nil)
    // Root's group for every file we write, and no supplementary groups of the caller.
    // Then root as the real uid too: the caller can no longer send us signals.
    // (With an effective uid of 0, setgid and setuid set the real, effective and saved ids.)
    guard setgroups(0, nil) == 0, setgid(0) == 0, setuid(0) == 0 else {
        fail("cannot drop the caller's identity")
    }
    _ = clearenv()
    umask(0o077)
}

/// The login name of `uid`, through getpwuid_r.
func userName(of uid: uid_t) -> String? {
    var entry = passwd()
    var result: UnsafeMutablePointer<passwd>?
    var buffer = [CChar](repeating: 0, count: 16384)
    guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else { return nil }
    return String(cString: name)
}

/// Root's settings: module arguments, one per line, '#' comments. Opened without
/// following a link and checked on the open descriptor: a regular file owned by root, not
/// writable by group or others, under 64 KiB.
func loadConfig() -> ModuleConfig {
    let fd = open(configPath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
    if fd < 0 {
        if errno == ENOENT { return ModuleConfig() }
        fail("cannot open \(configPath): \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == 0, st.st_mode & 0o022 == 0,
          st.st_size < 65536 else {
        fail("refusing \(configPath): it must be a regular file owned by root, not writable by group or others")
    }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < 65536 {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n < 0 { fail("cannot read \(configPath)") }
        if n == 0 { break }
        bytes += chunk[0..<n]
    }
    var args: [String] = []
    for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
        let text = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        args += text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
    }
    do { return try ModuleConfig.parse(args).config } catch { fail("\(configPath): \(error)") }
}

func readInput() -> [String] {
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1024)
    while bytes.count <= maxInput {
        let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    defer { ConstantTime.wipe(&chunk) }
    guard bytes.count <= maxInput else { ConstantTime.wipe(&bytes); fail("request too long", 2) }
    defer { ConstantTime.wipe(&bytes) }
    return String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
}

/// Prints the answer and leaves. A refusal costs the caller a second, after the answer.
func answer(_ text: String, slow: Bool = false) -> Never {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    if slow { sleep(1) }
    exit(0)
}

let caller = getuid()
dropInheritedState()
let arguments = CommandLine.arguments
guard arguments.count == 3 else { fail("usage: smartotp-chkotp USER summary|challenge|access|code|password|tap", 2) }
guard geteuid() == 0 else { fail("not installed setuid root (chmod 4755, owner root)") }
guard let callerName = userName(of: caller) else { fail("the calling uid \(caller) has no name") }
guard caller == 0 || arguments[1] == callerName else { fail("may check only the caller's own record", 2) }
let user: UserName
do { user = try UserName(arguments[1]) } catch { fail("\(error)", 2) }
guard let operation = HelperProtocol.Operation(rawValue: arguments[2]) else {
    fail("unknown operation \(ConfigError.printable(String(arguments[2].prefix(16))))", 2)
}

let config = loadConfig()
let records = LocalRecords(store: FileStore(root: config.store), policy: Policy(config))
let now = Int64(time(nil))
var input = readInput()
defer { for i in input.indices { input[i] = "" } }
func hexLine(_ lines: [String], _ i: Int) -> [UInt8]? {
    guard lines.indices.contains(i), let b = try? Hex.decode(lines[i]), (1...64).contains(b.count) else { return nil }
    return b
}

do {
    switch operation {
    case .summary:
        answer(HelperProtocol.encode(try records.summary(user, now: now)))
    case .challenge:
        answer(HelperProtocol.encode(challenge: try records.issueChallenge(for: user, now: now)))
    case .access:
        guard input.count >= 3, let card = hexLine(input, 1), let ours = hexLine(input, 2) else {
            fail("access needs TOKEN, CARD-CHALLENGE-HEX, OUR-CHALLENGE-HEX lines", 2)
        }
        answer(HelperProtocol.encode(access: try records.accessAnswers(for: user, tokenID: input[0], cardChallenge: card, ourChallenge: ours)))
    case .code, .password, .tap:
        let request: RecordOperation
        switch operation {
        case .code: request = .code(input.first ?? "")
        case .password: request = .password(input.first ?? "")
        default:
            guard input.count >= 3, let challenge = hexLine(input, 1), let response = hexLine(input, 2) else {
                fail("tap needs TOKEN, CHALLENGE-HEX, RESPONSE-HEX lines", 2)
            }
            request = .tap(tokenID: input[0], challenge: challenge, response: response)
        }
        let attempt = try records.perform(request, for: user, now: now)
        var accepted = false
        if case .accepted = attempt.verdict { accepted = true }
        answer(HelperProtocol.encode(attempt), slow: caller != 0 && !accepted)
    }
} catch {
    // Includes a failure count that could not be written: no verdict is given.
    fail("\(error)")
}
