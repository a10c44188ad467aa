import OTPCore

// The one grammar of every setting smartotp reads: the module's arguments and
// smartotp.conf (`ModuleConfig.options`), the verifier's policy (`Policy.options`) and
// smartotpd.conf (`ServerConfig.options`). Each is a table of `ConfigOption`s; a file or an
// argument list becomes `Setting`s (`name[=value]`), and each value is checked by one of
// `OptionValue`'s parsers (numbers, durations, paths, lists), so `30s`, `15m` and `7d` mean
// the same in every file, and every error reads the same way.

/// One `name[=value]` setting: a module argument, a word of a policy file or smartotpd's
/// `policy =`, or a `key = value` line of smartotpd.conf; split at its first `=`, `value`
/// nil when there is none. The one split rule.
public struct Setting: Sendable {
    public var name: String
    public var value: String?
    /// Where it was written (`FILE:LINE`), for errors; "" for a module argument.
    public var place: String = ""

    public init(name: String, value: String?, place: String = "") {
        self.name = name
        self.value = value
        self.place = place
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

    /// The settings of a file of `key = value` lines (smartotpd.conf): `#` at a line's start
    /// or after a space or tab starts a comment (one inside a value, such as a password in
    /// `database=`, does not), blank lines are skipped, spaces around the key and the value
    /// are dropped. A line without `=` is an error naming its place (`PATH:LINE`).
    public static func lines(of text: String, path: String) throws(ConfigError) -> [Setting] {
        var out: [Setting] = []
        for (number, raw) in text.splitBytes(UInt8(ascii: "\n"), omittingEmpty: false).enumerated() {
            let line = withoutComment(raw)
            let trimmed = line.trimmingASCIISpaces
            if trimmed.isEmpty { continue }
            let place = msg("\(path):\(number + 1)")
            let kv = trimmed.splitBytes(UInt8(ascii: "="), maxSplits: 1, omittingEmpty: false)
            guard kv.count == 2, !kv[0].trimmingASCIISpaces.isEmpty else { throw .atPlace(place, "expected key = value") }
            out.append(Setting(name: kv[0].trimmingASCIISpaces, value: kv[1].trimmingASCIISpaces, place: place))
        }
        return out
    }

    /// `line` up to its comment: a `#` first on the line or after a space or tab.
    static func withoutComment(_ line: String) -> String {
        var previous = UInt8(ascii: " ")
        var end = 0
        for b in line.utf8 {
            if b == UInt8(ascii: "#") && (previous == UInt8(ascii: " ") || previous == UInt8(ascii: "\t")) { break }
            previous = b
            end += 1
        }
        return String(decoding: line.utf8.prefix(end), as: UTF8.self)
    }

    /// As written, cut to 64 bytes: how an unknown argument is reported.
    public var reported: String {
        let whole = value.map { name + "=" + $0 } ?? name
        return String(decoding: whole.utf8.prefix(64), as: UTF8.self)
    }
}

/// One setting a configuration knows: its name, whether it takes a value, and how it sets
/// the configuration (what it means is the comment above it in its table, and the man
/// page's; the module carries no help text). Every setting of every configuration is one
/// of these, in one table per configuration; nothing else writes a setting's name.
public struct ConfigOption<Config>: Sendable {
    public let name: String
    public let takesValue: Bool
    public let apply: @Sendable (inout Config, OptionValue) throws(ConfigError) -> Void

    public init(name: String, takesValue: Bool, _ apply: @escaping @Sendable (inout Config, OptionValue) throws(ConfigError) -> Void) {
        self.name = name
        self.takesValue = takesValue
        self.apply = apply
    }
}

extension Array {
    /// Applies `setting` to `config` through the option of its name in this table: false
    /// when the table has none (the caller decides whether an unknown name is an error).
    public func apply<Config>(_ setting: Setting, to config: inout Config) throws(ConfigError) -> Bool
    where Element == ConfigOption<Config> {
        // An index loop (a login looks up each of its arguments in a table of twenty),
        // names compared as bytes (String.equals).
        var i = startIndex
        while i != endIndex && !self[i].name.equals(setting.name) { i = index(after: i) }
        guard i != endIndex else { return false }
        let option = self[i]
        let value: OptionValue
        do throws(ConfigError) {
            value = try OptionValue(option: setting.name, takesValue: option.takesValue, text: setting.value)
            try option.apply(&config, value)
        } catch {
            throw setting.place.isEmpty ? error : .atPlace(setting.place, error.description)
        }
        return true
    }

    /// The names in this table, as an error lists them.
    public func names<Config>() -> String where Element == ConfigOption<Config> {
        var names = ""
        for o in self { names += names.isEmpty ? o.name : ", " + o.name }
        return names
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

    /// A value checked by a caller's own rule: `expected` says what it should have been.
    public func invalid(_ expected: String) -> ConfigError {
        .badValue(name: name, value: text, expected: expected)
    }

    public func int(_ range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard let n = Int(text), range.contains(n) else {
            throw invalid(msg("a number from \(range.lowerBound) to \(range.upperBound)"))
        }
        return n
    }


    /// Seconds, or a number with `s`, `m`, `h` or `d`, within `range` (in seconds): the one
    /// way every setting of smartotp writes a duration (`30`, `30s`, `15m`, `8h`, `7d`).
    public func duration(_ range: ClosedRange<Int64>) throws(ConfigError) -> Int64 {
        guard let n = Self.duration(text), range.contains(n) else {
            throw invalid(msg("a duration from \(Self.durationText(range.lowerBound)) to \(Self.durationText(range.upperBound)) (a number of seconds, or with s, m, h or d)"))
        }
        return n
    }

    /// `text` as a duration in seconds, or nil.
    public static func duration(_ text: String) -> Int64? {
        var digits = text
        var scale: Int64
        switch text.utf8.last {
        case UInt8(ascii: "s"): scale = 1
        case UInt8(ascii: "m"): scale = 60
        case UInt8(ascii: "h"): scale = 3600
        case UInt8(ascii: "d"): scale = 86_400
        default: scale = 0
        }
        if scale != 0 { digits = String(decoding: text.utf8.dropLast(), as: UTF8.self) } else { scale = 1 }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let n = Int64(digits), n <= Int64.max / 86_400 else { return nil }
        return n * scale
    }

    /// A duration as a person writes it: whole days, hours or minutes when it is one.
    public static func durationText(_ seconds: Int64) -> String {
        if seconds >= 86_400 && seconds % 86_400 == 0 { return msg("\(seconds / 86_400)d") }
        if seconds >= 3600 && seconds % 3600 == 0 { return msg("\(seconds / 3600)h") }
        if seconds >= 60 && seconds % 60 == 0 { return msg("\(seconds / 60)m") }
        return msg("\(seconds)s")
    }

    /// The items of a `separator`-separated list, each checked by `item` (nil: refused,
    /// and `expected` says why); an empty list or an empty item is refused too. Items are
    /// as written (a caller that allows spaces trims them itself).
    public func list<T>(_ separator: UInt8, expected: String, _ item: (String) -> T?) throws(ConfigError) -> [T] {
        var out: [T] = []
        for part in text.splitBytes(separator, omittingEmpty: false) {
            guard let value = item(part) else { throw invalid(expected) }
            out.append(value)
        }
        guard !out.isEmpty else { throw invalid(expected) }
        return out
    }

    public func absolutePath() throws(ConfigError) -> String {
        guard Self.isAbsolutePath(text) else { throw invalid("an absolute path") }
        return text
    }

    /// An absolute path under 1024 bytes, without NUL.
    public static func isAbsolutePath(_ text: String) -> Bool {
        // Over the contiguous bytes: the String's UTF-8 view walks through generic code.
        var copy = text
        return copy.withUTF8 { b in b.count < 1024 && b.first == UInt8(ascii: "/") && !b.contains(0) }
    }
}

/// A setting that cannot be used. The module refuses to run (PAM_SERVICE_ERR) and
/// smartotpd refuses to start rather than guess: a malformed value must never make
/// authentication weaker.
public enum ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingValue(String)
    case unexpectedValue(String)
    case badValue(name: String, value: String, expected: String)
    /// A configuration file that cannot be trusted or read.
    case unreadableFile(path: String, reason: String)
    /// What is wrong at a place of a file (`PATH:LINE`): an unknown or repeated setting, a
    /// line that is no setting, or a value refused there.
    case atPlace(String, String)

    public var description: String {
        switch self {
        case .missingValue(let n): return msg("setting \(n) needs a value")
        case .unexpectedValue(let n): return msg("setting \(n) takes no value")
        case .badValue(let n, let v, let e): return msg("setting \(n)=\(Self.printable(v)) is invalid: expected \(e)")
        case .unreadableFile(let path, let reason): return msg("refusing \(path): \(reason)")
        case .atPlace(let place, let reason): return msg("\(place): \(reason)")
        }
    }

    /// Shows a value from outside safely in a log line: anything but printable ASCII
    /// escaped (each other byte as `\xNN`), at most 64 bytes of it shown.
    public static func printable(_ s: String) -> String {
        // Most values are already printable ASCII: those come back as they are.
        if s.utf8.count <= 64 && s.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) { return s }
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in s.utf8.prefix(64) {
            if (0x20...0x7E).contains(b) {
                out.append(b)
            } else {
                out += [UInt8(ascii: "\\"), UInt8(ascii: "x"), digits[Int(b >> 4)], digits[Int(b & 0xF)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
