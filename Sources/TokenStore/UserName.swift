import OTPCore

/// A user name checked before it becomes part of a path.
///
/// Accepted: 1–64 characters from `A–Z a–z 0–9 . _ - @`, plus a trailing `$` (Samba
/// machine accounts), not starting with `-` or `.`. That refuses `..`, `/`, NUL,
/// newlines and option-like names, and is wider than `useradd`'s default rule so that
/// directory users (`alice@example.com`) work.
public struct UserName: Sendable, Hashable, CustomStringConvertible, Comparable {
    public static let maxLength = 64
    public let value: String

    public init(_ raw: String) throws(StoreError) {
        // Over the String's own bytes: no array made (a login checks its user twice).
        var copy = raw
        let problem: StoreError? = copy.withUTF8 { bytes -> StoreError? in
            guard let first = bytes.first else { return .invalidUserName("empty") }
            guard bytes.count <= Self.maxLength else { return .invalidUserName(msg("longer than \(Self.maxLength) bytes")) }
            guard first != UInt8(ascii: "-"), first != UInt8(ascii: ".") else { return .invalidUserName("starts with '-' or '.'") }
            for i in 0..<bytes.count {
                let b = bytes[i]
                switch b {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                     UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"),
                     UInt8(ascii: "-"), UInt8(ascii: "@"):
                    continue
                case UInt8(ascii: "$") where i == bytes.count - 1:
                    continue
                default:
                    return .invalidUserName(msg("character \(b < 0x20 || b > 0x7E ? "0x" + String(b, radix: 16) : "'" + String(UnicodeScalar(b)) + "'") at position \(i + 1) is not allowed"))
                }
            }
            return nil
        }
        if let problem { throw problem }
        value = raw
    }

    public var description: String { value }
    /// By bytes (`String.equals`): a valid name is ASCII, where bytes and characters agree.
    public static func == (a: UserName, b: UserName) -> Bool { a.value.equals(b.value) }
    public static func < (a: UserName, b: UserName) -> Bool { a.value.utf8.lexicographicallyPrecedes(b.value.utf8) }
}
