internal import CPOSIX
import OTPCore

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
    /// its standard input (then wipes it), and reads at most `outputLimit` bytes of its
    /// standard output. The host's SIGCHLD disposition is set to the default while we wait
    /// (a host that reaps children itself would steal the status) and restored after.
    ///
    /// Both directions are socket pairs, not pipes: the request goes with MSG_NOSIGNAL, so a
    /// program that exits before reading it costs the host an EPIPE, never a SIGPIPE (a
    /// screen locker killed by a signal is a screen unlocked).
    public static func run(_ path: String, _ arguments: [String], input: consuming [UInt8], outputLimit: Int) throws(SystemCallError) -> Result {
        let toChild = try socketPair(path)
        let fromChild: (ours: Int32, theirs: Int32)
        do throws(SystemCallError) { fromChild = try socketPair(path) } catch {
            _ = close(toChild.ours); _ = close(toChild.theirs)
            throw error
        }
        var previous = sigaction()
        _ = cposix_set_signal(SIGCHLD, 0, &previous)
        defer { _ = cposix_restore_signal(SIGCHLD, &previous) }
        let pid: pid_t
        do throws(SystemCallError) {
            pid = try spawn(path, arguments, input: toChild.theirs, output: fromChild.theirs)
        } catch {
            for fd in [toChild.ours, toChild.theirs, fromChild.ours, fromChild.theirs] { _ = close(fd) }
            throw error
        }
        _ = close(toChild.theirs)
        _ = close(fromChild.theirs)
        _ = sendAll(toChild.ours, input)
        // `input` is ours (consuming): a caller's temporary array is wiped in place, not a
        // copy of it (zeroing a `var` copy would copy first and leave the original).
        ConstantTime.wipe(&input)
        _ = close(toChild.ours)
        let output = FileDescriptor(rawValue: fromChild.ours)
        let answer = (try? output.readAll(path, limit: outputLimit)) ?? nil
        output.close()
        var status: Int32 = 0
        while cposix_waitpid(pid, &status, 0) < 0 && cposix_errno() == EINTR {}
        return Result(exitCode: cposix_exited(status) != 0 ? cposix_exit_status(status) : nil, output: answer ?? [])
    }
}

/// A connected pair of Unix stream sockets, both close-on-exec: `theirs` becomes a child's
/// standard input or output (posix_spawn's dup2 clears the flag on that copy only).
func socketPair(_ path: String) throws(SystemCallError) -> (ours: Int32, theirs: Int32) {
    var pair: [Int32] = [-1, -1]
    guard cposix_socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
        throw .last("socketpair", path)
    }
    return (pair[0], pair[1])
}

/// Starts `path` with `arguments`, an empty environment, `input` and `output` as its
/// standard input and output, and /dev/null as its standard error: what the helper or the
/// fleet client has to say goes to syslog, never to the terminal of the program that
/// loaded the module (sudo's user). The program must be a regular file (not a symbolic
/// link) owned by root (or by this process's user) and not writable by group or others, as
/// a configuration file must: a `helper=` or `client=` that someone else could replace is
/// refused. argv is built in one buffer: the path and each argument, each followed by a NUL.
func spawn(_ path: String, _ arguments: [String], input: Int32, output: Int32) throws(SystemCallError) -> pid_t {
    guard let program = try FileSystem.linkStatus(path) else { throw SystemCallError("posix_spawn", path, errno: ENOENT) }
    guard program.isRegular, program.owner == 0 || program.owner == geteuid(), program.permissions & 0o022 == 0 else {
        throw SystemCallError("not run (it must be a regular file of root's, not a symbolic link, not writable by group or others):", path, errno: EPERM)
    }
    let devNull = try FileDescriptor.open("/dev/null", .writeOnly)
    defer { devNull.close() }
    var strings: [CChar] = []
    var offsets: [Int] = []
    for word in [path] + arguments {
        offsets.append(strings.count)
        for byte in word.utf8 { strings.append(CChar(bitPattern: byte)) }
        strings.append(0)
    }
    var pid: pid_t = 0
    let rc = strings.withUnsafeMutableBufferPointer { buffer -> Int32 in
        guard let base = buffer.baseAddress else { return EINVAL }  // never: the path's NUL is there
        var argv: [UnsafeMutablePointer<CChar>?] = offsets.map { base + $0 }
        argv.append(nil)
        var envp: [UnsafeMutablePointer<CChar>?] = [nil]
        return cposix_spawn(&pid, path, input, output, devNull.rawValue, argv, &envp)
    }
    guard rc == 0 else { throw SystemCallError("posix_spawn", path, errno: rc) }
    return pid
}

/// Writes all of `bytes` to the socket `fd` (MSG_NOSIGNAL: a reader that is gone is an
/// error, not a signal). False when the peer is gone before the end.
func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let sent = bytes.withUnsafeBytes { b in
            retryingOnInterrupt { cposix_send(fd, b.baseAddress.map { $0 + offset }, b.count - offset, Int32(MSG_NOSIGNAL)) }
        }
        guard sent > 0 else { return false }
        offset += sent
    }
    return true
}

/// A helper program kept running for several requests (the fleet client: one process and
/// one TLS connection for a whole login). It talks over a socket pair, not pipes, so that
/// writing to a client that died raises no SIGPIPE in the host (MSG_NOSIGNAL). What goes
/// over it (the verifier's `Frame`) is not this layer's business. Closing our end ends the
/// program (it reads end-of-file), and the session waits for it.
public final class Session {
    let path: String
    private var fd: Int32 = -1
    private var pid: pid_t = 0

    /// Starts `path` with `arguments` and an empty environment.
    public init(_ path: String, _ arguments: [String]) throws(SystemCallError) {
        self.path = path
        let pair = try socketPair(path)
        do throws(SystemCallError) {
            pid = try spawn(path, arguments, input: pair.theirs, output: pair.theirs)
        } catch {
            _ = close(pair.ours); _ = close(pair.theirs)
            throw error
        }
        _ = close(pair.theirs)
        fd = pair.ours
    }

    /// A session with a program already running as root and listening at `socket` (the
    /// fleet agent), instead of one started for it: `hello` out, then exactly `welcome` back.
    /// Nil when there is none there, it is not root's, or it does not welcome this session
    /// (busy, or the settings it was sent are not ones it can serve): the caller starts
    /// the program itself, as it would have without one.
    ///
    /// After the welcome each read or write may take `seconds` (the verifiers' deadline
    /// with room to spare): an agent that stops answering fails the login, not hangs it.
    public init?(agent socket: String, hello: [UInt8], welcome: [UInt8], seconds: Int32) {
        path = socket
        let fd = socket.withCString { cposix_connect_root_socket($0) }
        guard fd >= 0 else { return nil }
        self.fd = fd
        // Two seconds to connect and for the welcome (an agent stopped or stuck costs a login
        // no more), then `seconds` a step.
        guard sendAll(fd, hello), (try? receive(welcome.count)) == welcome, cposix_socket_timeout(fd, seconds) == 0 else {
            _ = close(fd)
            self.fd = -1
            return nil
        }
    }

    deinit {
        _ = close(fd)
        // Nothing to reap when the session was an agent's.
        guard pid != 0 else { return }
        // The program sees end-of-file and exits; reap it (SIGCHLD at its default meanwhile,
        // so that a host that reaps children itself does not take the status first).
        var previous = sigaction()
        _ = cposix_set_signal(SIGCHLD, 0, &previous)
        var status: Int32 = 0
        while cposix_waitpid(pid, &status, 0) < 0 && cposix_errno() == EINTR {}
        _ = cposix_restore_signal(SIGCHLD, &previous)
    }

    /// Sends all of `bytes` (MSG_NOSIGNAL). Throws when the program is gone.
    public func send(_ bytes: [UInt8]) throws(SystemCallError) {
        guard sendAll(fd, bytes) else { throw .last("send", path) }
    }

    /// Reads exactly `count` bytes. Throws at end-of-file (EPIPE: the program is gone) or
    /// on a read error.
    public func receive(_ count: Int) throws(SystemCallError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let got = out.withUnsafeMutableBytes { b in
                retryingOnInterrupt { read(fd, b.baseAddress.map { $0 + filled }, count - filled) }
            }
            guard got > 0 else { throw SystemCallError("read", path, errno: got == 0 ? EPIPE : cposix_errno()) }
            filled += got
        }
        return out
    }
}
