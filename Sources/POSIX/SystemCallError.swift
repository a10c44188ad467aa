internal import CPOSIX

/// A system call that failed: which call, on what, and errno. Never carries a secret.
public struct SystemCallError: Error, Equatable, Sendable, CustomStringConvertible {
    public var call: String
    public var path: String
    public var errno: Int32

    public init(_ call: String, _ path: String, errno: Int32) {
        self.call = call
        self.path = path
        self.errno = errno
    }

    /// The error of the call that just failed (errno of this thread).
    public static func last(_ call: String, _ path: String) -> SystemCallError {
        SystemCallError(call, path, errno: cposix_errno())
    }

    public var description: String { "\(call) \(path): \(Errno.describe(errno))" }
}

/// errno values the callers decide on, by their C names.
public enum Errno {
    public static let loop: Int32 = ELOOP
    /// A peer that does not speak the protocol (a bad frame).
    public static let protocolError: Int32 = EPROTO

    /// strerror(3).
    public static func describe(_ e: Int32) -> String {
        guard let s = cposix_strerror(e) else { return "error \(e)" }
        return String(cString: s)
    }
}

/// Runs `body` until it does not fail with EINTR: the one EINTR loop of the project.
@inline(__always)
public func retryingOnInterrupt<T: BinaryInteger>(_ body: () -> T) -> T {
    while true {
        let r = body()
        if r == -1 && cposix_errno() == EINTR { continue }
        return r
    }
}
