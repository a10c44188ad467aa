// smartotp-fleet — the network half of a fleet login, in a process of its own (as
// pam_unix leaves passwords to unix_chkpwd): the PAM module loads no TLS library and
// starts no thread in sshd or sudo; it runs this program instead, which asks smartotpd.
//
//     smartotp-fleet --server URL[,URL…] --tls-dir DIR [--timeout SECONDS] USER OPERATION
//
// Speaks exactly as the setuid helper does (HelperProtocol): the operation's arguments on
// standard input, the answer on standard output, exit 0. The servers are tried in order
// within the timeout; when none answers it prints nothing and exits 1, and the module
// fails closed (PAM_AUTHINFO_UNAVAIL). Run by root (the module in sshd/sudo) or by the
// setuid helper for a screen locker: DIR/key.pem is root's.
import FleetNet
import Glibc
import NIOCore
import OTPCore
import SmartOTPAuth
import SmartOTPFleet
import TokenStore

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

func fail(_ text: String, _ code: Int32 = 1) -> Never {
    put(2, "smartotp-fleet: \(text)\n")
    exit(code)
}

var args = Array(CommandLine.arguments.dropFirst())
var servers: [ServerURL] = []
var tlsDir = "/etc/smartotp/tls"
var timeout = 10
var positional: [String] = []
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
    case "--version": print("smartotp-fleet \(SmartOTPVersion.current)"); exit(0)
    default: positional.append(a)
    }
}
guard positional.count == 2, !servers.isEmpty else {
    fail("usage: smartotp-fleet --server URL[,URL…] --tls-dir DIR [--timeout S] USER summary|challenge|access|code|password|tap", 2)
}
let user: UserName
do { user = try UserName(positional[0]) } catch { fail("\(error)", 2) }
guard let operation = HelperProtocol.Operation(rawValue: positional[1]) else { fail("unknown operation", 2) }

var input: [UInt8] = []
var chunk = [UInt8](repeating: 0, count: 4096)
while true {
    let n = read(0, &chunk, chunk.count)
    if n < 0 && errno == EINTR { continue }
    if n <= 0 { break }
    input += chunk[0..<n]
    if input.count > 8192 { fail("request too long", 2) }
}
ConstantTime.wipe(&chunk)

do {
    let client = try FleetServers(servers, tlsDirectory: tlsDir)
    let response = try client.send(.POST, FleetAPI.verifyPath(operation, user), body: input, timeout: .seconds(Int64(timeout)))
    ConstantTime.wipe(&input)
    guard response.status == 200 else { fail("the verifier answered \(response.status): \(response.text.prefix(200))") }
    // Only a well-formed answer goes to the module.
    guard response.text.hasPrefix(HelperProtocol.version + "\n") else { fail("the verifier's answer is not a helper answer") }
    put(1, response.text)
    exit(0)
} catch {
    ConstantTime.wipe(&input)
    fail("\(error)")
}
