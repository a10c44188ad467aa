#if canImport(Glibc)
import Glibc
#endif
import OTPCore
import TokenStore

/// The record service for a module that runs as the user (screen lockers): each request
/// goes to the setuid-root `smartotp-chkotp`, which checks the caller's own record only,
/// with root's policy. The secret travels on a pipe, never on a command line, and the
/// helper starts with an empty environment.
public struct HelperRecords: RecordService {
    public let path: String

    public init(path: String) { self.path = path }

    public struct HelperError: Error, CustomStringConvertible {
        public let description: String
    }

    public func summary(_ user: UserName, now: Int64) throws -> RecordSummary? {
        let out = try call(user, .summary, input: "")
        return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeSummary(out) }
    }

    public func issueChallenge(for user: UserName, now: Int64) throws -> [UInt8] {
        let out = try call(user, .challenge, input: "")
        return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeChallenge(out) }
    }

    public func accessAnswers(for user: UserName, tokenID: String, cardChallenge: [UInt8], ourChallenge: [UInt8]) throws -> AccessAnswers? {
        let input = "\(tokenID)\n\(Hex.encode(cardChallenge))\n\(Hex.encode(ourChallenge))\n"
        let out = try call(user, .access, input: input)
        return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeAccess(out) }
    }

    /// The helper counts every attempt itself: nothing the caller sends can ask it not to.
    public func perform(_ operation: RecordOperation, for user: UserName, now: Int64) throws -> Attempt {
        let out: String
        switch operation {
        case .code(let c): out = try call(user, .code, input: c + "\n")
        case .password(let p): out = try call(user, .password, input: p + "\n")
        case .tap(let id, let challenge, let response):
            out = try call(user, .tap, input: "\(id)\n\(Hex.encode(challenge))\n\(Hex.encode(response))\n")
        }
        return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeAttempt(out) }
    }

    func decoded<T>(_ body: () throws(HelperProtocol.ParseError) -> T) throws -> T {
        do { return try body() } catch { throw HelperError(description: "\(path) answered something unexpected: \(error.description)") }
    }

    /// Runs the helper with `input` on its standard input; returns its standard output.
    func call(_ user: UserName, _ operation: HelperProtocol.Operation, input: String) throws(HelperError) -> String {
        var toChild: [Int32] = [-1, -1]
        var fromChild: [Int32] = [-1, -1]
        guard pipe(&toChild) == 0 else { throw HelperError(description: "pipe: \(errno)") }
        guard pipe(&fromChild) == 0 else {
            close(toChild[0]); close(toChild[1])
            throw HelperError(description: "pipe: \(errno)")
        }
        // Close-on-exec everywhere: only the dup2'd copies (0 and 1) reach the helper, and
        // no other child of the host inherits our pipe ends.
        for fd in toChild + fromChild { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        // The host may reap children itself (SIGCHLD handlers): use the default while we wait.
        var previous = sigaction()
        var defaultAction = sigaction()
        defaultAction.__sigaction_handler.sa_handler = nil  // SIG_DFL
        sigaction(SIGCHLD, &defaultAction, &previous)
        defer { sigaction(SIGCHLD, &previous, nil) }
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), strdup(user.value), strdup(operation.rawValue), nil]
        defer { for p in argv { free(p) } }
        var envp: [UnsafeMutablePointer<CChar>?] = [nil]
        let rc = posix_spawn(&pid, path, &actions, nil, argv, &envp)
        close(toChild[0])
        close(fromChild[1])
        guard rc == 0 else {
            close(toChild[1]); close(fromChild[0])
            throw HelperError(description: "cannot run \(path): \(String(cString: strerror(rc)))")
        }
        var request = Array(input.utf8)
        var offset = 0
        while offset < request.count {
            let n = request.withUnsafeBytes { write(toChild[1], $0.baseAddress.map { $0 + offset }, request.count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            offset += n
        }
        ConstantTime.wipe(&request)
        close(toChild[1])
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while output.count < RecordFormat.maxSize {
            let n = chunk.withUnsafeMutableBytes { read(fromChild[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            output += chunk[0..<n]
        }
        close(fromChild[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = (status & 0x7F) == 0
        let code = (status >> 8) & 0xFF
        guard exited, code == 0 else { throw HelperError(description: "\(path) failed (status \(status))") }
        return String(decoding: output, as: UTF8.self)
    }
}


