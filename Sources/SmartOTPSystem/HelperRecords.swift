import OTPCore
import POSIX
import SmartOTPAuth
import TokenStore
import Verifier

/// A record service behind a program that speaks the helper's protocol: the setuid helper
/// (`HelperRecords`, one run a request) or the fleet client (`SessionRecords`, one process a
/// login). The requests and answers are HelperProtocol's; only the way to the program
/// differs. No secret ever comes back.
public protocol HelperSpeaking: RecordService {
    /// The program, as errors name it.
    var path: String { get }
    /// The program's answer to `request` for `user`.
    func answer(_ request: HelperProtocol.Request, for user: UserName) throws(RecordError) -> String
}

extension HelperSpeaking {
    public func summary(_ user: UserName, now: Int64) throws(RecordError) -> RecordSummary? {
        let out = try answer(.summary, for: user)
        return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeSummary(out) }
    }

    public func issueChallenge(for user: UserName, now: Int64) throws(RecordError) -> [UInt8] {
        let out = try answer(.challenge, for: user)
        return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeChallenge(out) }
    }

    public func accessAnswers(for user: UserName, tokenID: String, cardChallenge: [UInt8], ourChallenge: [UInt8], now: Int64) throws(RecordError) -> AccessAnswers? {
        let out = try answer(.access(tokenID: tokenID, cardChallenge: cardChallenge, ourChallenge: ourChallenge), for: user)
        return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeAccess(out) }
    }

    /// The verifier counts every attempt itself: nothing the caller sends can ask it not to.
    public func perform(_ operation: RecordOperation, for user: UserName, now: Int64) throws(RecordError) -> Attempt {
        let out = try answer(.perform(operation), for: user)
        return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeAttempt(out) }
    }

    func decoded<T>(_ body: () throws(HelperProtocol.ParseError) -> T) throws(RecordError) -> T {
        do { return try body() } catch { throw .verifier(path + " answered something unexpected: " + error.description) }
    }
}

/// The record service for a module that runs as the user (screen lockers): each request
/// goes to the setuid-root `smartotp-chkotp`, which checks the caller's own record only,
/// with root's policy. The secret travels on a socket pair, never on a command line, and the
/// helper starts with an empty environment.
public struct HelperRecords: HelperSpeaking {
    public let path: String

    public init(path: String) { self.path = path }

    /// Runs the helper with the request's lines on its standard input (wiped after).
    public func answer(_ request: HelperProtocol.Request, for user: UserName) throws(RecordError) -> String {
        let result: Subprocess.Result
        do {
            result = try Subprocess.run(path, [user.value, request.operation.rawValue], input: Array(request.input.utf8),
                                        outputLimit: WireLimits.answer)
        } catch {
            throw .verifier("cannot run " + path + ": " + error.description)
        }
        guard result.exitCode == 0 else {
            throw .verifier(path + " failed (" + (result.exitCode.map { msg("exit \($0)") } ?? "killed by a signal") + ")")
        }
        return String(decoding: result.output, as: UTF8.self)
    }
}
