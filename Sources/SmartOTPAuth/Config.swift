import TokenStore

/// The ways a user can prove the second factor, in the order offered.
public enum Method: String, Sendable, CaseIterable {
    case card
    case code
    case password
}

/// Module settings, from the arguments in /etc/pam.d/* (one table, `ModuleConfig.table`).
public struct ModuleConfig: Sendable, Equatable {
    public var store = FileStore.defaultRoot
    public var methods: [Method] = [.card, .code, .password]
    /// Seconds to wait for a tap.
    public var timeout = 30
    public var reader: String?
    public var skew = 1
    public var window = 20
    public var deny = 5
    public var unlockTime: Int64 = 600
    public var failInterval: Int64 = 900
    public var evenDenyRoot = false
    public var rootUnlockTime: Int64?
    public var nullok = false
    public var tryFirstPass = false
    public var useFirstPass = false
    public var debug = false
    /// The setuid helper used when the module does not run as root.
    public var helper = "/usr/local/sbin/smartotp-chkotp"

    public init() {}

    /// One row per argument: name, whether it takes a value, what it means (for the man page and errors).
    public static let table: [(name: String, takesValue: Bool, help: String)] = [
        ("store", true, "directory of the user records (default /var/lib/smartotp)"),
        ("methods", true, "ways offered, in order: card,code,password (default all three)"),
        ("timeout", true, "seconds to wait for a tap, 1-600 (default 30)"),
        ("reader", true, "use only readers whose name contains this text"),
        ("skew", true, "TOTP steps accepted either side of now, 0-10 (default 1)"),
        ("window", true, "HOTP look-ahead, 1-1000 (default 20)"),
        ("deny", true, "lock after this many failures within fail_interval, 0 = never (default 5)"),
        ("fail_interval", true, "seconds within which failures add up, 1-31536000 (default 900)"),
        ("unlock_time", true, "seconds a lock lasts after the last failure, 0 = until smartotp unlock (default 600)"),
        ("even_deny_root", false, "root can be locked too (by default root is never locked)"),
        ("root_unlock_time", true, "with even_deny_root: seconds root's lock lasts (default unlock_time)"),
        ("nullok", false, "a user without a record is ignored (PAM_IGNORE) rather than unknown"),
        ("try_first_pass", false, "try PAM_AUTHTOK from an earlier module first, then prompt"),
        ("use_first_pass", false, "use only PAM_AUTHTOK from an earlier module; never prompt"),
        ("debug", false, "log each step to syslog at debug level"),
        ("helper", true, "setuid helper for callers that are not root (default /usr/local/sbin/smartotp-chkotp)"),
    ]

    /// The result of parsing: the config, and arguments that were not understood.
    public struct Parsed: Sendable {
        public var config: ModuleConfig
        /// Unknown argument names: logged and ignored, as pam_unix does.
        public var unknown: [String]
    }

    /// Parses module arguments. A known argument with a malformed value throws (the module
    /// then fails safe with PAM_SERVICE_ERR); an unknown one is reported in `unknown`.
    public static func parse(_ arguments: [String]) throws(ConfigError) -> Parsed {
        var c = ModuleConfig()
        var unknown: [String] = []
        for arg in arguments {
            let parts = arg.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            let value = parts.count > 1 ? String(parts[1]) : nil
            guard let row = table.first(where: { $0.name == name }) else {
                unknown.append(String(arg.prefix(64)))
                continue
            }
            if row.takesValue && value == nil { throw .missingValue(name) }
            if !row.takesValue && value != nil { throw .unexpectedValue(name) }
            let v = value ?? ""
            func int(_ range: ClosedRange<Int>) throws(ConfigError) -> Int {
                guard let n = Int(v), range.contains(n) else { throw .badValue(name: name, value: v, expected: "a number from \(range.lowerBound) to \(range.upperBound)") }
                return n
            }
            switch name {
            case "store":
                guard v.hasPrefix("/"), !v.contains("\0"), v.utf8.count < 1024 else {
                    throw .badValue(name: name, value: v, expected: "an absolute path")
                }
                c.store = v
            case "methods":
                var list: [Method] = []
                for item in v.split(separator: ",", omittingEmptySubsequences: false) {
                    guard let m = Method(rawValue: String(item)), !list.contains(m) else {
                        throw .badValue(name: name, value: v, expected: "a list of card, code, password")
                    }
                    list.append(m)
                }
                guard !list.isEmpty else { throw .badValue(name: name, value: v, expected: "a list of card, code, password") }
                c.methods = list
            case "timeout": c.timeout = try int(1...600)
            case "reader":
                guard !v.isEmpty, v.utf8.count <= 128 else { throw .badValue(name: name, value: v, expected: "part of a reader name") }
                c.reader = v
            case "skew": c.skew = try int(0...10)
            case "window": c.window = try int(1...1000)
            case "deny": c.deny = try int(0...1000)
            case "unlock_time": c.unlockTime = Int64(try int(0...31_536_000))
            case "fail_interval": c.failInterval = Int64(try int(1...31_536_000))
            case "even_deny_root": c.evenDenyRoot = true
            case "root_unlock_time": c.rootUnlockTime = Int64(try int(0...31_536_000))
            case "nullok": c.nullok = true
            case "try_first_pass": c.tryFirstPass = true
            case "use_first_pass": c.useFirstPass = true
            case "debug": c.debug = true
            case "helper":
                guard v.hasPrefix("/"), v.utf8.count < 1024 else { throw .badValue(name: name, value: v, expected: "an absolute path") }
                c.helper = v
            default: unknown.append(name)
            }
        }
        return Parsed(config: c, unknown: unknown)
    }
}

/// A module argument that cannot be used. The module refuses to run (PAM_SERVICE_ERR)
/// rather than guess: a malformed value must never make authentication weaker.
public enum ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingValue(String)
    case unexpectedValue(String)
    case badValue(name: String, value: String, expected: String)

    public var description: String {
        switch self {
        case .missingValue(let n): return "module argument \(n)= needs a value"
        case .unexpectedValue(let n): return "module argument \(n) takes no value"
        case .badValue(let n, let v, let e): return "module argument \(n)=\(Self.printable(v)) is invalid: expected \(e)"
        }
    }

    /// Shows a value from outside safely in a log line: anything but printable ASCII
    /// escaped, at most 64 characters.
    public static func printable(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars.prefix(64) {
            out += (0x20...0x7E).contains(scalar.value) ? String(scalar) : "\\u{\(String(scalar.value, radix: 16))}"
        }
        return out
    }
}
