// smartotp-fleet — the network half of a fleet login, in a process of its own (as
// pam_unix leaves passwords to unix_chkpwd): the PAM module loads no TLS library and
// starts no thread in sshd or sudo; it runs this program instead, which asks smartotpd.
// See smartotp-fleet(8).
//
//     smartotp-fleet --session [--service S] [--rhost H] -- MODULE-SETTINGS…
//     smartotp-fleet --server URL[,URL…] --tls-dir DIR [--timeout SECONDS] USER OPERATION
//     smartotp-fleet --server URL[,URL…] --tls-dir DIR --admin GET|POST PATH
//
// With --session (what the module and the setuid helper use) it reads the module's own
// settings — the module arguments after `--`, over /etc/smartotp/smartotp.conf, as the
// module reads them — and serves several requests on one connection, each in the
// verifier's `Frame` (`LENGTH\n` and LENGTH bytes both ways, the request's first line
// `USER OPERATION`); it ends at end-of-file. A request that gets no verdict is answered
// with a `FleetNotice` frame (the module fails closed); with offline=tap, a tap is decided
// here from the host's offline stock while no verifier answers (FleetClient). Without it,
// one request: its arguments on standard input, the answer on standard output, exit 0;
// when no verifier answers, exit 3 (1 when one refused: 403, 429, …).
import FleetClient
import FleetNet
import Glibc
import OTPCore
import POSIX
import SmartOTPAuth
import SmartOTPFleet
import SmartOTPSystem
import TokenStore
import Verifier

func put(_ fd: Int32, _ bytes: [UInt8]) {
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
    note(code == 2 ? LOG_NOTICE : LOG_ERR, text)
    exit(code)
}

/// Says `text` to syslog and to standard error (the agent's journal).
func note(_ level: Int32, _ text: String) {
    text.withCString { message in withVaList([message]) { vsyslog(LOG_AUTHPRIV | level, "%s", $0) } }
    put(2, Array("smartotp-fleet: \(text)\n".utf8))
}

/// A header value from PAM's items: printable ASCII only (no line breaks), at most 255.
func printable(_ s: String) -> String {
    String(String.UnicodeScalarView(s.unicodeScalars.prefix(255).map { $0.value >= 0x20 && $0.value < 0x7F ? $0 : "?" }))
}

/// Reads exactly `count` bytes of `fd` (standard input, or an agent's session); nil at
/// end-of-file or an error.
func readExactly(_ count: Int, from fd: Int32 = 0) -> [UInt8]? {
    var out = [UInt8](repeating: 0, count: count)
    var filled = 0
    while filled < count {
        let n = out.withUnsafeMutableBytes { b in read(fd, b.baseAddress.map { $0 + filled }, count - filled) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { ConstantTime.wipe(&out); return nil }
        filled += n
    }
    return out
}

/// What `readFrame` read.
enum FrameRead {
    case frame([UInt8])
    /// End-of-file before the frame's first byte.
    case end
    case bad(String)
}

/// One frame (`LENGTH\n` and LENGTH bytes, at most `limit`) from `fd`.
func readFrame(from fd: Int32, limit: Int) -> FrameRead {
    var header = Frame.Header(limit: limit)
    var length: Int?
    do {
        while length == nil {
            guard let b = readExactly(1, from: fd) else { return header.isEmpty ? .end : .bad("a frame cut short") }
            length = try header.feed(b[0])
        }
    } catch { return .bad("\(error)") }
    guard let frame = readExactly(length ?? 0, from: fd) else { return .bad("a frame cut short") }
    return .frame(frame)
}

/// Standard input to its end, at most `limit` bytes (nil beyond).
func readAll(limit: Int) -> [UInt8]? {
    var input: [UInt8] = []
    while input.count <= limit, let b = readExactly(1) { input += b }
    return input.count > limit ? nil : input
}

/// The verifiers through FleetNet's HTTPS client: one connection kept for a session.
final class HTTPSVerifiers: Verifiers {
    let client: FleetServers
    let context: [(String, String)]

    init(_ client: FleetServers, context: [(String, String)]) {
        self.client = client
        self.context = context
    }

    func ask(_ operation: HelperProtocol.Operation, _ user: UserName, body: [UInt8], timeout: Int) -> Asked {
        do {
            let response = try client.send(.POST, FleetAPI.verifyPath(operation, user), headers: context, body: body, timeout: .seconds(Int64(timeout)))
            guard response.status == 200 else {
                let why = "the verifier answered \(response.status): \(response.text.prefix(200))"
                return response.status < 500 ? .refused(why) : .unreachable(why)
            }
            // Only a well-formed answer goes on.
            guard response.text.hasPrefix(HelperProtocol.version + "\n") else { return .refused("the verifier's answer is not a helper answer") }
            return .answer(response.text)
        } catch {
            return .unreachable("\(error)")
        }
    }
}

/// The command line, read through the grammar every setting of smartotp shares (a table of
/// `ConfigOption`s): `--NAME VALUE` and `--NAME` are settings `NAME=VALUE` and `NAME`.
struct Command {
    var server: String?
    var tlsDir: String?
    var timeout: Int?
    var session = false
    var service: String?
    var rhost: String?
    var admin: [String] = []
    var request: [String] = []
    /// The module's settings, after `--`.
    var moduleSettings: [String]?

    static let usage = """
        usage: smartotp-fleet --session [--service S] [--rhost H] -- MODULE-SETTINGS…
               smartotp-fleet --server URL[,URL…] --tls-dir DIR [--timeout S] [--service S] [--rhost H] USER OPERATION
               smartotp-fleet --server URL[,URL…] --tls-dir DIR [--timeout S] --admin GET|POST PATH
        """

    static let options: [ConfigOption<Command>] = [
        // the verifiers, https://HOST[:PORT][,…], tried in order
        .init(name: "server", takesValue: true) { c, v throws(ConfigError) in
            guard ServerURL.list(v.text) != nil else { throw v.invalid("https://HOST[:PORT][,…]") }
            c.server = v.text
        },
        // the TLS identity: ca.pem, cert.pem, key.pem
        .init(name: "tls-dir", takesValue: true) { c, v throws(ConfigError) in c.tlsDir = try v.absolutePath() },
        // seconds for a verdict, all verifiers together
        .init(name: "timeout", takesValue: true) { c, v throws(ConfigError) in c.timeout = try v.int(1...300) },
        // serve framed requests (the module's way)
        .init(name: "session", takesValue: false) { c, _ throws(ConfigError) in c.session = true },
        // PAM_SERVICE, for the audit trail
        .init(name: "service", takesValue: true) { c, v throws(ConfigError) in c.service = v.text },
        // PAM_RHOST, for the audit trail
        .init(name: "rhost", takesValue: true) { c, v throws(ConfigError) in c.rhost = v.text },
    ]

    /// Reads the words of the command line (without the program's name).
    static func parse(_ words: [String]) throws -> Command {
        var c = Command()
        var rest = words[...]
        while let word = rest.popFirst() {
            if word == "--" {
                c.moduleSettings = Array(rest)
                break
            }
            if word == "--version" {
                print("smartotp-fleet \(SmartOTPVersion.current)")
                Glibc.exit(0)
            }
            if word == "--admin" {
                guard rest.count >= 2 else { throw ConfigError.missingValue("admin") }
                c.admin = [rest.removeFirst(), rest.removeFirst()]
                continue
            }
            guard word.hasPrefix("--") else {
                c.request.append(word)
                continue
            }
            let name = String(word.dropFirst(2))
            guard let option = options.first(where: { $0.name == name }) else { throw ConfigError.atPlace(word, "unknown option") }
            var value: String?
            if option.takesValue {
                guard let v = rest.popFirst() else { throw ConfigError.missingValue(name) }
                value = v
            }
            _ = try options.apply(Setting(name: name, value: value), to: &c)
        }
        try c.validate()
        return c
    }

    func validate() throws {
        if !admin.isEmpty {
            let other = [FleetAPI.healthPath, FleetAPI.joinPath, FleetAPI.renewPath]
            guard ["GET", "POST"].contains(admin[0]), admin[1].hasPrefix("/v1/admin/") || other.contains(admin[1]),
                  admin[1].utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw Failure("--admin needs GET|POST and a /v1/admin/ path (or /v1/join, /v1/renew)") }
        }
        let modes = (session ? 1 : 0) + (admin.isEmpty ? 0 : 1) + (request.isEmpty ? 0 : 1)
        guard modes == 1 else { throw Failure("give one of --session, --admin METHOD PATH, or USER OPERATION") }
        guard request.isEmpty || request.count == 2 else { throw Failure("a request is USER OPERATION") }
        if moduleSettings != nil {
            guard session, server == nil, tlsDir == nil, timeout == nil else {
                throw Failure("module settings after -- go with --session alone: they name the servers, the TLS identity and the timeout")
            }
        } else {
            guard server != nil else { throw Failure("--server is required (or, with --session, the module's settings after --)") }
        }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    func run() throws {
        if admin.isEmpty && Users.effectiveUID == 0 {
            // Started by the module inside the application (sudo, su, sshd; a screen
            // locker's through the setuid helper): the application's user must not be able
            // to stop or starve it — a SIGSTOP past its timeout would turn "the verifiers are
            // slow" into "no verifier answered", and so into an offline tap. Root as the real
            // uid too, limits and signals of its own, a session of its own.
            do throws(SetuidProcess.Refusal) { try SetuidProcess.dropInheritedState() } catch { fail(error.description) }
            SetuidProcess.newSession()
        }
        // A server that resets the connection mid-request is a failed request (EPIPE: the
        // next server is asked), not the end of the process.
        _ = signal(SIGPIPE, SIG_IGN)
        let setup: Setup
        do { setup = try self.setup() } catch { fail(error.description, 2) }
        let https: FleetServers
        // A host that joins has only the fleet's CA, no certificate yet.
        do { https = try FleetServers(setup.servers, tlsDirectory: setup.identity, trustOnly: admin.last == FleetAPI.joinPath) } catch { fail("\(error)") }

        if !admin.isEmpty { return administer(https) }
        let client = setup.client(https)
        if session {
            if let why = serve(client, on: 0, answering: 1) { fail(why, 2) }
            Glibc.exit(0)
        }
        let user: UserName
        do { user = try UserName(request[0]) } catch { fail("\(error)", 2) }
        guard let operation = HelperProtocol.Operation.named(request[1]) else { fail("unknown operation", 2) }
        guard operation != .offline else { fail("offline reports are the fleet client's own to send, not a caller's", 2) }
        guard var input = readAll(limit: WireLimits.request) else { fail("request too long", 2) }
        let parsed: HelperProtocol.Request
        do { parsed = try HelperProtocol.request(operation, lines: HelperProtocol.lines(input)) } catch { fail("\(error)", 2) }
        ConstantTime.wipe(&input)
        let answer = client.answer(parsed, for: user)
        if let why = FleetNotice.read(answer) { fail(why, client.refused ? 1 : 3) }
        put(1, Array(answer.utf8))
    }

    /// Where the verifiers are and how to ask them: the module's settings (read as the
    /// module reads them), or the flags. Throws what is wrong with them.
    func setup() throws(Failure) -> Setup {
        var context: [(String, String)] = []
        if let service { context.append(("X-SmartOTP-Service", printable(service))) }
        if let rhost { context.append(("X-SmartOTP-RHost", printable(rhost))) }
        guard let words = moduleSettings else {
            guard let list = ServerURL.list(server ?? "") else { throw Failure("--server needs https://HOST[:PORT][,…]") }
            return Setup(servers: list, identity: tlsDir ?? "/etc/smartotp/tls", settings: ClientSettings(timeout: timeout ?? 10),
                         context: context, service: service ?? "", rhost: rhost ?? "")
        }
        let config: ModuleConfig
        do { config = try ModuleConfig.load(arguments: words.map(Setting.init)).config } catch { throw Failure("\(error)") }
        guard let list = ServerURL.list(config.servers.joined(separator: ",")) else { throw Failure("the module's settings name no server (server=)") }
        return Setup(servers: list, identity: config.tlsDir,
                     settings: ClientSettings(timeout: config.serverTimeout, offlineStore: config.offlineTap ? config.store : nil,
                                              offlineMaxAge: config.offlineMaxAge, policy: config.policy.lock),
                     context: context, service: service ?? "", rhost: rhost ?? "")
    }

    /// Frames from `input`, each answered on `output`, until end-of-file (nil) or a frame
    /// that is not a request (why).
    func serve(_ client: FleetClient, on input: Int32, answering output: Int32) -> String? {
        while true {
            var frame: [UInt8]
            switch readFrame(from: input, limit: WireLimits.requestFrame) {
            case .end: return nil
            case .bad(let why): return why
            case .frame(let bytes): frame = bytes
            }
            let request: HelperProtocol.Request
            let user: UserName
            do {
                let parsed = try Frame.parseRequest(frame)
                user = parsed.user
                request = try HelperProtocol.request(parsed.operation, lines: HelperProtocol.lines(parsed.arguments))
            } catch {
                ConstantTime.wipe(&frame)
                return "\(error)"
            }
            ConstantTime.wipe(&frame)
            put(output, Frame.encode(Array(client.answer(request, for: user).utf8)))
        }
    }

    /// An administrator's request (`smartotp --server` runs this, so that the CLI links no
    /// TLS library): the body on standard input, `STATUS` and a newline then the server's
    /// answer on standard output, exit 0 whatever the status; when no verifier answers, `0`
    /// and why, exit 3.
    func administer(_ https: FleetServers) {
        guard var body = readAll(limit: FleetAPI.maxBody) else { fail("request too long", 2) }
        defer { ConstantTime.wipe(&body) }
        do {
            let r = try https.send(admin[0] == "GET" ? .GET : .POST, admin[1], body: body, timeout: .seconds(Int64(timeout ?? 10)))
            put(1, Array("\(r.status)\n".utf8))
            var out = r.body
            put(1, out)
            ConstantTime.wipe(&out)
        } catch {
            put(1, Array("0\n\(error)\n".utf8))
            Glibc.exit(3)
        }
    }
}

/// A session's verifiers, identity and settings, from the module's settings or the flags.
struct Setup {
    let servers: [ServerURL]
    let identity: String
    let settings: ClientSettings
    let context: [(String, String)]
    let service: String
    let rhost: String

    func client(_ https: FleetServers) -> FleetClient {
        FleetClient(verifiers: HTTPSVerifiers(https, context: context), settings: settings, service: service, remoteHost: rhost)
    }
}

// None of what sshd or sudo left open stays in a process that holds the host's TLS key.
SetuidProcess.closeInheritedDescriptors()
if CommandLine.arguments.dropFirst().first == "--agent" { FleetAgentServer.run(Array(CommandLine.arguments.dropFirst(2))) }
let command: Command
do { command = try Command.parse(Array(CommandLine.arguments.dropFirst())) } catch { fail("\(error)\n\(Command.usage)", 2) }
try command.run()
