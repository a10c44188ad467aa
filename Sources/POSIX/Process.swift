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
