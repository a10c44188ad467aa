import OTPCore
import TokenStore

/// The verifier's policy: the TOTP skew, the HOTP window and the lock. One value decides
/// for every caller (the module, the setuid helper, `smartotp verify`, smartotpd), read
/// from one table of settings, `Policy.options`, whose names the module's arguments,
/// smartotp.conf and smartotpd's `policy =` line all use.
public struct Policy: Sendable, Equatable {
    public var skew: Int
    public var window: Int
    public var lock: LockPolicy

    public init(skew: Int = 1, window: Int = 20, lock: LockPolicy = LockPolicy()) {
        self.skew = skew
        self.window = window
        self.lock = lock
    }

    /// One setting of the policy: its name, whether it takes a value, what it means (for
    /// the man page and errors), and how it sets the policy.
    public struct Option: Sendable {
        public let name: String
        public let takesValue: Bool
        public let help: String
        public let apply: @Sendable (inout Policy, OptionValue) throws(ConfigError) -> Void
    }

    static let year = 31_536_000

    /// The policy's settings: the one list of their names.
    public static let options: [Option] = [
        Option(name: "skew", takesValue: true, help: "TOTP steps accepted either side of now, 0-10 (default 1)") { p, v throws(ConfigError) in
            p.skew = try v.int(0...10)
        },
        Option(name: "window", takesValue: true, help: "HOTP look-ahead, 1-1000 (default 20)") { p, v throws(ConfigError) in
            p.window = try v.int(1...1000)
        },
        Option(name: "deny", takesValue: true, help: "lock after this many failures within fail_interval, 0 = never (default 5)") { p, v throws(ConfigError) in
            p.lock.deny = try v.int(0...1000)
        },
        Option(name: "fail_interval", takesValue: true, help: "seconds within which failures add up, 1-31536000 (default 900)") { p, v throws(ConfigError) in
            p.lock.failInterval = try v.seconds(1...year)
        },
        Option(name: "unlock_time", takesValue: true, help: "seconds a lock lasts after the last failure, 0 = until smartotp unlock (default 600)") { p, v throws(ConfigError) in
            p.lock.unlockTime = try v.seconds(0...year)
        },
        Option(name: "even_deny_root", takesValue: false, help: "root can be locked too (by default root is never locked)") { p, _ throws(ConfigError) in
            p.lock.evenDenyRoot = true
        },
        Option(name: "root_unlock_time", takesValue: true, help: "with even_deny_root: seconds root's lock lasts (default unlock_time)") { p, v throws(ConfigError) in
            p.lock.rootUnlockTime = try v.seconds(0...year)
        },
    ]

    /// The policy of `words` (`deny=3 unlock_time=60 …`) over the defaults: smartotpd's
    /// `policy =` line. Anything that is not a policy setting is refused, naming the ones
    /// that are.
    public static func parse(_ words: [String]) throws(ConfigError) -> Policy {
        var policy = Policy()
        for word in words {
            let setting = Setting(word)
            guard let option = options.first(where: { $0.name == setting.name }) else {
                var names = ""
                for o in options { names += names.isEmpty ? o.name : ", " + o.name }
                throw .badValue(name: setting.name, value: setting.value ?? "", expected: "a policy setting (" + names + ")")
            }
            try option.apply(&policy, try OptionValue(option: option.name, takesValue: option.takesValue, text: setting.value))
        }
        return policy
    }
}

/// One `name[=value]` word of a module argument, a policy file or smartotpd's `policy =`,
/// split at its first `=`: `value` is nil when there is none. The one split rule.
public struct Setting: Sendable {
    public var name: String
    public var value: String?

    public init(name: String, value: String?) {
        self.name = name
        self.value = value
    }

    /// Splits `name=value` at the first '='; invalid UTF-8 is replaced (it matches no
    /// option and fails every value check). The module calls this on PAM's C strings.
    public init(bytes: UnsafeBufferPointer<UInt8>) {
        func text(_ range: Range<Int>) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        }
        if let eq = bytes.firstIndex(of: UInt8(ascii: "=")) {
            self.init(name: text(0..<eq), value: text(eq + 1..<bytes.count))
        } else {
            self.init(name: text(0..<bytes.count), value: nil)
        }
    }

    public init(_ text: String) {
        var text = text
        self = text.withUTF8 { Setting(bytes: $0) }
    }

    /// The words of a configuration file in module-argument syntax: `#` starts a comment,
    /// words are separated by spaces, tabs and line ends.
    public static func words(of text: String) -> [String] {
        var text = text
        return text.withUTF8 { words(of: $0) }
    }

    /// The same over a file's bytes, in one pass: a String is made only for each word kept
    /// (the module reads the policy file at every login; comments cost a scan, nothing more).
    public static func words(of bytes: UnsafeBufferPointer<UInt8>) -> [String] {
        var out: [String] = []
        let n = bytes.count
        var i = 0
        while i < n {
            let b = bytes[i]
            if b == UInt8(ascii: "#") {
                // A comment: to the end of the line in one tight loop.
                while i < n && bytes[i] != UInt8(ascii: "\n") { i += 1 }
            } else if b <= UInt8(ascii: " ") {
                i += 1  // a space, a tab, a line end
            } else {
                let start = i
                while i < n && bytes[i] > UInt8(ascii: " ") && bytes[i] != UInt8(ascii: "#") { i += 1 }
                out.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self))
            }
        }
        return out
    }

    /// As written, cut to 64 bytes: how an unknown argument is reported.
    public var reported: String {
        let whole = value.map { name + "=" + $0 } ?? name
        return String(decoding: whole.utf8.prefix(64), as: UTF8.self)
    }
}

/// A setting's value, with the checks every setting uses.
public struct OptionValue: Sendable {
    public let name: String
    public let text: String

    /// Checks that a value is present exactly when the setting takes one.
    public init(option name: String, takesValue: Bool, text: String?) throws(ConfigError) {
        if takesValue && text == nil { throw .missingValue(name) }
        if !takesValue && text != nil { throw .unexpectedValue(name) }
        self.name = name
        self.text = text ?? ""
    }

    public func int(_ range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard let n = Int(text), range.contains(n) else {
            throw .badValue(name: name, value: text, expected: msg("a number from \(range.lowerBound) to \(range.upperBound)"))
        }
        return n
    }

    public func seconds(_ range: ClosedRange<Int>) throws(ConfigError) -> Int64 { Int64(try int(range)) }

    public func absolutePath() throws(ConfigError) -> String {
        // Over the contiguous bytes: the String's UTF-8 view walks through generic code.
        var copy = text
        let ok = copy.withUTF8 { b in b.count < 1024 && b.first == UInt8(ascii: "/") && !b.contains(0) }
        guard ok else { throw .badValue(name: name, value: text, expected: "an absolute path") }
        return text
    }
}

/// A module argument that cannot be used. The module refuses to run (PAM_SERVICE_ERR)
/// rather than guess: a malformed value must never make authentication weaker.
public enum ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingValue(String)
    case unexpectedValue(String)
    case badValue(name: String, value: String, expected: String)
    /// A configuration file that cannot be trusted or read.
    case unreadableFile(path: String, reason: String)

    public var description: String {
        switch self {
        case .missingValue(let n): return msg("module argument \(n)= needs a value")
        case .unexpectedValue(let n): return msg("module argument \(n) takes no value")
        case .badValue(let n, let v, let e): return msg("module argument \(n)=\(Self.printable(v)) is invalid: expected \(e)")
        case .unreadableFile(let path, let reason): return msg("refusing \(path): \(reason)")
        }
    }

    /// Shows a value from outside safely in a log line: anything but printable ASCII
    /// escaped, at most 64 characters.
    public static func printable(_ s: String) -> String {
        // Most values are already printable ASCII: those come back as they are.
        if s.utf8.count <= 64 && s.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) { return s }
        var out = ""
        for scalar in s.unicodeScalars.prefix(64) {
            out += (0x20...0x7E).contains(scalar.value) ? String(scalar) : msg("\\u{\(String(scalar.value, radix: 16))}")
        }
        return out
    }
}
