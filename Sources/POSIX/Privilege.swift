internal import CPOSIX

/// What a program root runs on a user's behalf does about what the user handed it, and how
/// it ends: the setuid helper's system calls, and the fleet client's when the module starts
/// it inside an application (the module links none of them).
public enum SetuidProcess {
    /// Why the inherited state could not be dropped.
    public enum Refusal: Error, Equatable, Sendable, CustomStringConvertible {
        case limits, coreDumps, identity
        public var description: String {
            switch self {
            case .limits: return "cannot reset resource limits"
            case .coreDumps: return "cannot disable core dumps"
            case .identity: return "cannot drop the caller's identity"
            }
        }
    }

    /// Undoes what a caller can hand a setuid program: limits, signals, group, real uid,
    /// environment, umask.
    ///
    /// Limits a caller could use to make a write fail half-way (RLIMIT_FSIZE), or to kill
    /// the process between the count and the verdict (RLIMIT_CPU), go back to none where
    /// root may raise them (CAP_SYS_RESOURCE; a container may withhold it), else up to the
    /// hard limit: a limit that remains can only make the count fail to write, and then no
    /// verdict is given at all. No core dumps: the memory holds secrets. Every signal
    /// disposition back to its default (ignored signals stay ignored across exec) and none
    /// blocked, except SIGXFSZ, ignored: a write over a remaining file-size limit then fails
    /// with EFBIG, the temporary file is removed, and no verdict is given, instead of a kill
    /// half-way through the write. Then root's group with no supplementary groups of the
    /// caller, and root as the real uid too (with an effective uid of 0, setgid and setuid
    /// set the real, effective and saved ids): the caller can no longer signal the process.
    public static func dropInheritedState() throws(Refusal) {
        for resource in [RLIMIT_FSIZE, RLIMIT_CPU, RLIMIT_DATA, RLIMIT_AS] {
            let r = __rlimit_resource_t(resource.rawValue)
            var unlimited = rlimit(rlim_cur: rlim_t.max, rlim_max: rlim_t.max)  // RLIM_INFINITY
            if setrlimit(r, &unlimited) != 0 {
                var current = rlimit()
                guard getrlimit(r, &current) == 0 else { throw .limits }
                current.rlim_cur = current.rlim_max
                guard setrlimit(r, &current) == 0 else { throw .limits }
            }
        }
        var files = rlimit(rlim_cur: 1024, rlim_max: 1024)
        var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
        _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files)  // may exceed a lower hard limit: best effort
        guard setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore) == 0 else { throw .coreDumps }
        for signal in 1..<Int32(65) where signal != SIGKILL && signal != SIGSTOP {
            _ = cposix_set_signal(signal, 0, nil)
        }
        _ = cposix_set_signal(SIGXFSZ, 1, nil)
        var none = sigset_t()
        sigemptyset(&none)
        _ = sigprocmask(SIG_SETMASK, &none, nil)
        guard setgroups(0, nil) == 0, setgid(0) == 0, setuid(0) == 0 else { throw .identity }
        _ = clearenv()
        umask(0o077)
    }

    /// A session of its own (setsid(2)): the terminal's job control and its signals
    /// (Ctrl-Z, Ctrl-C) no longer reach the process.
    public static func newSession() { _ = setsid() }

    /// Closes every descriptor from 3 up: only the request's socket pair (0, 1) and
    /// standard error stay, nothing the caller left open (sshd's or a locker's).
    public static func closeInheritedDescriptors() {
        if cposix_close_from(3) != 0 {
            // No close_range (Linux before 5.9): every number up to the hard limit.
            var limit = rlimit()
            let top = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 ? min(Int32(clamping: limit.rlim_max), 1 << 20) : 1024
            for fd in Int32(3)..<max(top, 1024) { _ = close(fd) }
        }
    }

    /// SIGALRM in `seconds` (at its default disposition: the process ends).
    public static func deadline(seconds: UInt32) { _ = alarm(seconds) }

    /// Writes `bytes` to descriptor `fd` (best effort: the process is about to end).
    public static func write(_ fd: Int32, _ bytes: [UInt8]) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { CPOSIX.write(fd, $0.baseAddress.map { $0 + done }, $0.count - done) }
            if n > 0 { done += n } else if n < 0 && cposix_errno() == EINTR { continue } else { return }
        }
    }

    /// Waits `seconds`, then ends the process with `code`.
    public static func exit(_ code: Int32, after seconds: UInt32 = 0) -> Never {
        if seconds > 0 { _ = sleep(seconds) }
        CPOSIX.exit(code)
    }
}
