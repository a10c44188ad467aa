// smartotp-fleet — the network half of a fleet login, in a process of its own (as
// pam_unix leaves passwords to unix_chkpwd): the PAM module loads no TLS library and
// starts no thread in sshd or sudo; it runs this program instead, which asks smartotpd.
//
//     smartotp-fleet --server URL[,URL…] --tls-dir DIR [--timeout SECONDS] USER OPERATION
//     smartotp-fleet --server URL[,URL…] --tls-dir DIR [--timeout SECONDS] --session
//
// Speaks exactly as the setuid helper does (HelperProtocol): the operation's arguments on
// standard input, the answer on standard output, exit 0. With --session (what the module
// uses) it serves several requests on one connection, each in the verifier's `Frame`
// (`LENGTH\n` and LENGTH bytes both ways, the request's first line `USER OPERATION`); it ends at
// end-of-file, or at the first request it cannot answer. The servers are tried in order
// within the timeout; when none answers it exits 3 (1 when one refused: 403, 429, …) and
// the module fails closed (PAM_AUTHINFO_UNAVAIL), or with offline=tap tries the host's
// offline pair; in a session it first sends a frame saying which (FleetNotice). Run by root (the module in sshd/sudo) or by the
// setuid helper for a screen locker: DIR/key.pem is root's.
import FleetNet
import Glibc
import NIOCore
import NIOHTTP1
import OTPCore
import SmartOTPFleet
import TokenStore
import Verifier

func put(_ fd: Int32, _ text: String) {
    let bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        done += n
    }
}

/// Says why to syslog (the module points our standard error at /dev/null: a verifier's
/// error text never reaches the terminal of sudo's user) and to standard error (an
/// administrator running it by hand), then exits.
func fail(_ text: String, _ code: Int32 = 1) -> Never {
    openlog("smartotp-fleet", LOG_PID, LOG_AUTHPRIV)
    text.withCString { message in withVaList([message]) { vsyslog(LOG_AUTHPRIV | (code == 2 ? LOG_NOTICE : LOG_ERR), "%s", $0) } }
    put(2, "smartotp-fleet: \(text)\n")
    exit(code)
}

/// Closes every descriptor but 0-2 that sshd or sudo left open when the module started us:
/// none of theirs stays in a process that holds the host's TLS key.
func closeInheritedDescriptors() {
    guard let dir = opendir("/proc/self/fd") else { return }
    let own = dirfd(dir)
    var open: [Int32] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if let fd = Int32(name), fd > 2, fd != own { open.append(fd) }
    }
    closedir(dir)
    for fd in open { close(fd) }
}

closeInheritedDescriptors()

/// A header value from PAM's items: printable ASCII only (no line breaks), at most 255.
func printable(_ s: String) -> String {
    String(String.UnicodeScalarView(s.unicodeScalars.prefix(255).map { $0.value >= 0x20 && $0.value < 0x7F ? $0 : "?" }))
}

var args = Array(CommandLine.arguments.dropFirst())
var servers: [ServerURL] = []
var tlsDir = "/etc/smartotp/tls"
var timeout = 10
var positional: [String] = []
nonisolated(unsafe) var session = false  // read by noVerdict (one thread)
/// `--admin METHOD PATH`: one administrator's request for `smartotp --server`.
var admin: (method: HTTPMethod, path: String)?
/// PAM_SERVICE and PAM_RHOST of the login, for the verifier's audit trail.
var context: [(String, String)] = []
while !args.isEmpty {
    let a = args.removeFirst()
    func value() -> String {
        guard !args.isEmpty else { fail("\(a) needs a value", 2) }
        return args.removeFirst()
    }
    switch a {
    case "--server":
        guard let list = ServerURL.list(value()) else { fail("--server needs https://HOST[:PORT][,…]", 2) }
        servers = list
    case "--tls-dir": tlsDir = value()
    case "--timeout":
        guard let t = Int(value()), (1...300).contains(t) else { fail("--timeout needs 1-300 seconds", 2) }
        timeout = t
    case "--session": session = true
    case "--admin":
        let method = value(), path = value()
        guard ["GET", "POST"].contains(method), path.hasPrefix("/v1/admin/") || path == FleetAPI.healthPath,
              path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { fail("--admin needs GET|POST and a /v1/admin/ path", 2) }
        admin = (method == "GET" ? .GET : .POST, path)
    case "--service": context.append(("X-SmartOTP-Service", printable(value())))
    case "--rhost": context.append(("X-SmartOTP-RHost", printable(value())))
    case "--version": print("smartotp-fleet \(SmartOTPVersion.current)"); exit(0)
    default: positional.append(a)
    }
}
guard !servers.isEmpty, session || admin != nil ? positional.isEmpty : positional.count == 2 else {
    fail("usage: smartotp-fleet --server URL[,URL…] --tls-dir DIR [--timeout S] [--service S] [--rhost H] (USER summary|challenge|access|code|password|tap | --session | --admin GET|POST PATH)", 2)
}

/// Ends the run without a verdict. In a session the module first gets one frame saying
/// whether a verifier answered at all (`FleetNotice`): only when none did (no answer, or
/// only 5xx: the verifiers cannot reach their database) may it try an offline tap; a
/// verifier that refused (403, 429, …) is a refusal. Exit 3 when none answered, else 1.
func noVerdict(_ text: String, reached: Bool) -> Never {
    if session { put(1, String(decoding: Frame.encode(Array(FleetNotice.text(reached: reached, text).utf8)), as: UTF8.self)) }
    fail(text, reached ? 1 : 3)
}

/// The request `operation` for `user` with `input`: the verifier's helper answer, or the end.
func verdict(_ client: FleetServers, _ user: UserName, _ operation: HelperProtocol.Operation, _ input: inout [UInt8], timeout: Int,
             context: [(String, String)]) -> String {
    defer { ConstantTime.wipe(&input) }
    do {
        let response = try client.send(.POST, FleetAPI.verifyPath(operation, user), headers: context, body: input, timeout: .seconds(Int64(timeout)))
        guard response.status == 200 else {
            noVerdict("the verifier answered \(response.status): \(response.text.prefix(200))", reached: response.status < 500)
        }
        // Only a well-formed answer goes to the module.
        guard response.text.hasPrefix(HelperProtocol.version + "\n") else { noVerdict("the verifier's answer is not a helper answer", reached: true) }
        return response.text
    } catch {
        noVerdict("\(error)", reached: false)
    }
}

/// Reads exactly `count` bytes of standard input; nil at end-of-file.
func readExactly(_ count: Int) -> [UInt8]? {
    var out = [UInt8](repeating: 0, count: count)
    var filled = 0
    while filled < count {
        let n = out.withUnsafeMutableBytes { read(0, $0.baseAddress! + filled, count - filled) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { ConstantTime.wipe(&out); return nil }
        filled += n
    }
    return out
}

let client: FleetServers
do { client = try FleetServers(servers, tlsDirectory: tlsDir) } catch { fail("\(error)") }

if session {
    while true {
        var header = Frame.Header(limit: WireLimits.requestFrame)
        var length: Int?
        do {
            while length == nil {
                guard let b = readExactly(1) else { exit(header.isEmpty ? 0 : 2) }
                length = try header.feed(b[0])
            }
        } catch { fail("\(error)", 2) }
        guard var frame = readExactly(length ?? 0) else { fail("a frame cut short", 2) }
        let request: (user: UserName, operation: HelperProtocol.Operation, arguments: [UInt8])
        do { request = try Frame.parseRequest(frame) } catch {
            ConstantTime.wipe(&frame)
            fail("\(error)", 2)
        }
        ConstantTime.wipe(&frame)
        var input = request.arguments
        put(1, String(decoding: Frame.encode(Array(verdict(client, request.user, request.operation, &input, timeout: timeout, context: context).utf8)), as: UTF8.self))
    }
}

/// An administrator's request (`smartotp --server` runs this, so that the CLI links no TLS
/// library): the body on standard input, `STATUS` and a newline then the server's answer
/// on standard output, exit 0 whatever the status; when no verifier answers, `0` and why,
/// exit 3.
if let admin {
    var body: [UInt8] = []
    while body.count <= FleetAPI.maxBody, let b = readExactly(1) { body += b }
    defer { ConstantTime.wipe(&body) }
    if body.count > FleetAPI.maxBody { fail("request too long", 2) }
    do {
        let r = try client.send(admin.method, admin.path, body: body, timeout: .seconds(Int64(timeout)))
        put(1, "\(r.status)\n")
        var out = r.body
        out.withUnsafeBytes { b in
            var done = 0
            while done < b.count {
                let n = write(1, b.baseAddress.map { $0 + done }, b.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                done += n
            }
        }
        ConstantTime.wipe(&out)
        exit(0)
    } catch {
        put(1, "0\n\(error)\n")
        exit(3)
    }
}

let user: UserName
do { user = try UserName(positional[0]) } catch { fail("\(error)", 2) }
guard let operation = HelperProtocol.Operation(rawValue: positional[1]) else { fail("unknown operation", 2) }
var input: [UInt8] = []
while input.count <= WireLimits.request, let b = readExactly(1) { input += b }
if input.count > WireLimits.request { fail("request too long", 2) }
put(1, verdict(client, user, operation, &input, timeout: timeout, context: context))
exit(0)
