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
        let bytes = Array(raw.utf8)
        guard !bytes.isEmpty else { throw .invalidUserName("empty") }
        guard bytes.count <= Self.maxLength else { throw .invalidUserName(msg("longer than \(Self.maxLength) bytes")) }
        guard let first = bytes.first, first != UInt8(ascii: "-"), first != UInt8(ascii: ".") else {
            throw .invalidUserName("starts with '-' or '.'")
        }
        for (i, b) in bytes.enumerated() {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"),
                 UInt8(ascii: "-"), UInt8(ascii: "@"):
                continue
            case UInt8(ascii: "$") where i == bytes.count - 1:
                continue
            default:
                throw .invalidUserName(msg("character \(b < 0x20 || b > 0x7E ? "0x" + String(b, radix: 16) : "'" + String(UnicodeScalar(b)) + "'") at position \(i + 1) is not allowed"))
            }
        }
        value = raw
    }

    public var description: String { value }
    public static func < (a: UserName, b: UserName) -> Bool { a.value < b.value }
}
