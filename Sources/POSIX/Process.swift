internal import CPOSIX

/// Running another program with a request on its standard input and its answer on its
/// standard output: how the module asks the setuid helper.
public enum Subprocess {
    /// How a run ended.
    public struct Result: Sendable {
        /// The exit code, or nil when the program did not exit normally (a signal).
        public var exitCode: Int32?
        public var output: [UInt8]
    }

    /// Runs `path` with `arguments` (argv[1…]) and an empty environment, writes `input` to
    /// its standard input (then wipes the copy), and reads at most `outputLimit` bytes of its
    /// standard output. The host's SIGCHLD disposition is set to the default while we wait
    /// (a host that reaps children itself would steal the status) and restored after.
    public static func run(_ path: String, _ arguments: [String], input: [UInt8], outputLimit: Int) throws(SystemCallError) -> Result {
        var toChild: [Int32] = [-1, -1]
        var fromChild: [Int32] = [-1, -1]
        guard pipe(&toChild) == 0 else { throw .last("pipe", path) }
        guard pipe(&fromChild) == 0 else {
            _ = close(toChild[0]); _ = close(toChild[1])
            throw .last("pipe", path)
        }
        // Close-on-exec everywhere: only the dup2'd copies (0 and 1) reach the child, and
        // no other child of the host inherits our pipe ends.
        for fd in toChild + fromChild { _ = cposix_set_cloexec(fd) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        var previous = sigaction()
        _ = cposix_set_signal(SIGCHLD, 0, &previous)
        defer { _ = cposix_restore_signal(SIGCHLD, &previous) }
        var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) }
        argv.append(nil)
        defer { for p in argv { free(p) } }
        var envp: [UnsafeMutablePointer<CChar>?] = [nil]
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, &envp)
        _ = close(toChild[0])
        _ = close(fromChild[1])
        guard rc == 0 else {
            _ = close(toChild[1]); _ = close(fromChild[0])
            throw SystemCallError("posix_spawn", path, errno: rc)
        }
        var request = input
        var offset = 0
        while offset < request.count {
            let n = request.withUnsafeBytes { b in
                retryingOnInterrupt { write(toChild[1], b.baseAddress.map { $0 + offset }, b.count - offset) }
            }
            if n <= 0 { break }
            offset += n
        }
        for i in request.indices { request[i] = 0 }
        _ = close(toChild[1])
        let output = FileDescriptor(rawValue: fromChild[0])
        let answer = (try? output.readAll(path, limit: outputLimit)) ?? nil
        output.close()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && cposix_errno() == EINTR {}
        return Result(exitCode: cposix_exited(status) != 0 ? cposix_exit_status(status) : nil, output: answer ?? [])
    }
}

/// A helper program kept running for several requests (the fleet client: one process and
/// one TLS connection for a whole login). It talks over a socket pair, not pipes, so that
/// writing to a client that died raises no SIGPIPE in the host (MSG_NOSIGNAL).
///
/// Frames: a request is `LENGTH\n` and LENGTH bytes; so is an answer. Closing our end ends
/// the program (it reads end-of-file), and the session waits for it.
public final class Session {
    let path: String
    private var fd: Int32 = -1
    private var pid: pid_t = 0

    /// Starts `path` with `arguments` and an empty environment.
    public init(_ path: String, _ arguments: [String]) throws(SystemCallError) {
        self.path = path
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw .last("socketpair", path)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pair[1], 0)
        posix_spawn_file_actions_adddup2(&actions, pair[1], 1)
        var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) }
        argv.append(nil)
        defer { for p in argv { free(p) } }
        var envp: [UnsafeMutablePointer<CChar>?] = [nil]
        let rc = posix_spawn(&pid, path, &actions, nil, argv, &envp)
        _ = close(pair[1])
        guard rc == 0 else {
            _ = close(pair[0])
            throw SystemCallError("posix_spawn", path, errno: rc)
        }
        fd = pair[0]
    }

    deinit {
        _ = close(fd)
        // The program sees end-of-file and exits; reap it (SIGCHLD at its default meanwhile,
        // so that a host that reaps children itself does not take the status first).
        var previous = sigaction()
        _ = cposix_set_signal(SIGCHLD, 0, &previous)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && cposix_errno() == EINTR {}
        _ = cposix_restore_signal(SIGCHLD, &previous)
    }

    /// Sends one request and reads its answer (at most `limit` bytes). The request's copy is
    /// wiped. Throws when the program is gone or says something unframed.
    public func exchange(_ request: [UInt8], limit: Int) throws(SystemCallError) -> [UInt8] {
        var frame: [UInt8] = []
        frame.reserveCapacity(request.count + 12)
        var digits: [UInt8] = []
        var n = request.count
        repeat { digits.insert(UInt8(ascii: "0") + UInt8(n % 10), at: 0); n /= 10 } while n > 0
        frame += digits
        frame.append(UInt8(ascii: "\n"))
        frame += request
        defer { for i in frame.indices { frame[i] = 0 } }
        var offset = 0
        while offset < frame.count {
            let sent = frame.withUnsafeBytes { b in
                retryingOnInterrupt { send(fd, b.baseAddress.map { $0 + offset }, b.count - offset, Int32(MSG_NOSIGNAL)) }
            }
            guard sent > 0 else { throw .last("send", path) }
            offset += sent
        }
        // "LENGTH\n", then the answer.
        var length = 0
        var byte: UInt8 = 0
        while true {
            let got = retryingOnInterrupt { read(fd, &byte, 1) }
            guard got == 1 else { throw SystemCallError("read", path, errno: got == 0 ? EPIPE : cposix_errno()) }
            if byte == UInt8(ascii: "\n") { break }
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"), length <= limit else {
                throw SystemCallError("read", path, errno: EPROTO)
            }
            length = length * 10 + Int(byte - UInt8(ascii: "0"))
        }
        guard length <= limit else { throw SystemCallError("read", path, errno: EPROTO) }
        var answer = [UInt8](repeating: 0, count: length)
        var filled = 0
        while filled < length {
            let got = answer.withUnsafeMutableBytes { b in
                retryingOnInterrupt { read(fd, b.baseAddress.map { $0 + filled }, length - filled) }
            }
            guard got > 0 else { throw SystemCallError("read", path, errno: got == 0 ? EPIPE : cposix_errno()) }
            filled += got
        }
        return answer
    }
}
