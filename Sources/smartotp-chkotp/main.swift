// smartotp-chkotp — the setuid-root helper for callers that run as the user.
//
// Screen lockers run PAM as the user, who cannot read the root-owned 0600 records. As
// unix_chkpwd does for pam_unix, this small program checks the calling user's own
// record, and nothing else:
//
//     smartotp-chkotp USER summary|code|password|tap   (request on standard input)
//
// - USER must be the caller's own name (real uid), unless the caller is root.
// - The secret comes on standard input, never on the command line.
// - The store and the lock policy come from root's /etc/smartotp/smartotp.conf (module
//   argument syntax, one per line), never from the caller, so the lockout holds even
//   for a user who runs this program by hand; each refusal also costs one second.
// - It prints one line: "accepted DETAIL", "replayed TOKEN", "rejected", "locked", or for
//   "summary" the record with every secret left out. Exit 0; 1 on error; 2 on misuse.
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

/// The login name of `uid`, through getpwuid_r.
func userName(of uid: uid_t) -> String? {
    var entry = passwd()
    var result: UnsafeMutablePointer<passwd>?
    var buffer = [CChar](repeating: 0, count: 16384)
    guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else { return nil }
    return String(cString: name)
}

/// Root's settings: module arguments, one per line, '#' comments. Refused unless owned by
/// root and not writable by others.
func loadConfig() -> ModuleConfig {
    var st = stat()
    guard lstat(configPath, &st) == 0 else { return ModuleConfig() }
    guard (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == 0, st.st_mode & 0o022 == 0, st.st_size < 65536 else {
        fail("refusing \(configPath): it must be a regular file owned by root, not writable by others")
    }
    guard let file = fopen(configPath, "r") else { fail("cannot read \(configPath)") }
    defer { fclose(file) }
    var args: [String] = []
    var line: UnsafeMutablePointer<CChar>?
    var capacity = 0
    while getline(&line, &capacity, file) > 0, let l = line {
        let text = String(cString: l).split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        args += text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map(String.init)
    }
    free(line)
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
    guard bytes.count <= maxInput else { fail("request too long", 2) }
    defer { ConstantTime.wipe(&bytes) }
    return String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
}

/// The record without secrets: what the flow needs to choose and prompt.
func sanitised(_ r: UserRecord) -> UserRecord {
    var out = r
    out.passwordHash = r.passwordHash == nil ? nil : "*"
    out.recoveryCodes = r.recoveryCodes.map { _ in "*" }
    for i in out.tokens.indices { out.tokens[i].secret = SecretBytes([0]) }
    return out
}

let arguments = CommandLine.arguments
guard arguments.count == 3 else { fail("usage: smartotp-chkotp USER summary|code|password|tap", 2) }
guard geteuid() == 0 else { fail("not installed setuid root (chmod 4755, owner root)") }
let caller = getuid()
guard let callerName = userName(of: caller) else { fail("the calling uid \(caller) has no name") }
guard caller == 0 || arguments[1] == callerName else { fail("may check only the caller's own record", 2) }
let user: UserName
do { user = try UserName(arguments[1]) } catch { fail("\(error)", 2) }
// Nothing from the caller's environment is used; the locale and the like cannot reach us.
_ = clearenv()

let config = loadConfig()
let records = LocalRecords(store: FileStore(root: config.store), policy: Policy(config))
let now = Int64(time(nil))
var input = readInput()

let operation: RecordOperation
switch arguments[2] {
case "summary":
    do {
        guard let r = try records.summary(user) else { print("none"); exit(0) }
        print(RecordFormat.serialise(sanitised(r)), terminator: "")
        exit(0)
    } catch { fail("\(error)") }
case "code": operation = .code(input.first ?? "")
case "password": operation = .password(input.first ?? "")
case "tap":
    guard input.count >= 3, let challenge = try? Hex.decode(input[1]), let response = try? Hex.decode(input[2]),
          challenge.count <= 64, response.count <= 64 else { fail("tap needs TOKEN, CHALLENGE-HEX, RESPONSE-HEX lines", 2) }
    operation = .tap(tokenID: input[0], challenge: challenge, response: response)
default:
    fail("unknown operation \(arguments[2].prefix(16))", 2)
}
for i in input.indices { input[i] = "" }

do {
    let verdict = try records.perform(operation, for: user, now: now, countFailure: true)
    switch verdict {
    case .accepted(let detail): print("accepted \(detail)")
    case .replayed(let id): print("replayed \(id)")
    case .rejected: print("rejected")
    case .locked: print("locked")
    }
    var accepted = false
    if case .accepted = verdict { accepted = true }
    if caller != 0 && !accepted { fflush(nil); sleep(1) }
    exit(0)
} catch {
    fail("\(error)")
}
