import OTPCore
import POSIX
import SmartOTPAuth
import TokenStore

/// The record service for a module that runs as the user (screen lockers): each request
/// goes to the setuid-root `smartotp-chkotp`, which checks the caller's own record only,
/// with root's policy. The secret travels on a pipe, never on a command line, and the
/// helper starts with an empty environment.
public struct HelperRecords: RecordService {
    public let path: String
    /// Arguments before USER OPERATION (the fleet client's servers and identity).
    public let options: [String]

    public init(path: String, options: [String] = []) {
        self.path = path
        self.options = options
    }

    /// The fleet client for `config`'s servers: it speaks as the helper does.
    public static func fleet(_ config: ModuleConfig) -> HelperRecords {
        var servers = ""
        for s in config.servers { servers += servers.isEmpty ? s : "," + s }
        return HelperRecords(path: config.client, options: [
            "--server", servers, "--tls-dir", config.tlsDir, "--timeout", msg("\(config.serverTimeout)"),
        ])
    }

    public func summary(_ user: UserName, now: Int64) throws(RecordError) -> RecordSummary? {
        let out = try call(user, .summary, input: "")
        return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeSummary(out) }
    }

    public func issueChallenge(for user: UserName, now: Int64) throws(RecordError) -> [UInt8] {
        let out = try call(user, .challenge, input: "")
        return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeChallenge(out) }
    }

    public func accessAnswers(for user: UserName, tokenID: String, cardChallenge: [UInt8], ourChallenge: [UInt8]) throws(RecordError) -> AccessAnswers? {
        let input = tokenID + "\n" + Hex.encode(cardChallenge) + "\n" + Hex.encode(ourChallenge) + "\n"
        let out = try call(user, .access, input: input)
        return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeAccess(out) }
    }

    /// The helper counts every attempt itself: nothing the caller sends can ask it not to.
    public func perform(_ operation: RecordOperation, for user: UserName, now: Int64) throws(RecordError) -> Attempt {
        let out: String
        switch operation {
        case .code(let c): out = try call(user, .code, input: c + "\n")
        case .password(let p): out = try call(user, .password, input: p + "\n")
        case .tap(let id, let challenge, let response):
            out = try call(user, .tap, input: id + "\n" + Hex.encode(challenge) + "\n" + Hex.encode(response) + "\n")
        }
        return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeAttempt(out) }
    }

    func decoded<T>(_ body: () throws(HelperProtocol.ParseError) -> T) throws(RecordError) -> T {
        do { return try body() } catch { throw .verifier(path + " answered something unexpected: " + error.description) }
    }

    /// Runs the helper with `input` on its standard input (wiped after); its answer.
    func call(_ user: UserName, _ operation: HelperProtocol.Operation, input: String) throws(RecordError) -> String {
        let result: Subprocess.Result
        do {
            result = try Subprocess.run(path, options + [user.value, operation.rawValue], input: Array(input.utf8),
                                        outputLimit: RecordFormat.maxSize)
        } catch {
            throw .verifier("cannot run " + path + ": " + error.description)
        }
        guard result.exitCode == 0 else {
            throw .verifier(path + " failed (" + (result.exitCode.map { msg("exit \($0)") } ?? "killed by a signal") + ")")
        }
        return String(decoding: result.output, as: UTF8.self)
    }
}
