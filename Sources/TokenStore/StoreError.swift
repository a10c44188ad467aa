import OTPCore
import POSIX

/// What can go wrong with the records on disk. Each case names the path and, where an
/// administrator can fix it, the fix. None carries a secret.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidUserName(String)
    case insecure(path: String, reason: String)
    case malformed(path: String, line: Int, reason: String)
    case io(path: String, operation: String, errno: Int32)
    case tooLarge(path: String)
    case invalidValue(String)
    /// The store (or one of its directories) does not exist.
    case missing(path: String)
    /// The fleet's verifier (a remote store) failed or refused; the text says which.
    case remote(String)

    public var description: String {
        switch self {
        case .invalidUserName(let why): return msg("invalid user name: \(why)")
        case .insecure(let path, let reason): return msg("refusing \(path): \(reason)")
        case .malformed(let path, let line, let reason): return msg("\(path):\(line): \(reason)")
        case .io(let path, let op, let e): return msg("\(op) \(path): \(Errno.describe(e))")
        case .tooLarge(let path): return msg("refusing \(path): larger than \(RecordFormat.maxSize) bytes")
        case .invalidValue(let why): return why
        case .remote(let why): return why
        case .missing(let path):
            return msg("the store \(path) does not exist (a typo in store=, or a filesystem not mounted?); smartotp enroll creates it")
        }
    }
}
