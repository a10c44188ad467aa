/// One BER-TLV data object with a one-byte tag, as YKOATH uses (ISO 7816-4 §5.2.2).
public struct TLV: Sendable, Equatable {
    public var tag: UInt8
    public var value: [UInt8]

    public init(_ tag: UInt8, _ value: [UInt8] = []) {
        self.tag = tag
        self.value = value
    }

    /// Largest value this encoder writes: a two-byte BER length.
    public static let maxLength = 0xFFFF

    /// Tag, BER length (1 byte below 0x80, then 0x81 xx, 0x82 xx xx), value. Values over
    /// `maxLength` are cut to it: callers never build such values.
    public var encoded: [UInt8] {
        let n = min(value.count, Self.maxLength)
        var out: [UInt8] = [tag]
        if n < 0x80 {
            out.append(UInt8(n))
        } else if n <= 0xFF {
            out += [0x81, UInt8(n)]
        } else {
            out += [0x82, UInt8(n >> 8), UInt8(n & 0xFF)]
        }
        out += value.prefix(n)
        return out
    }

    /// Parses a sequence of TLVs. Returns nil, never traps, on a truncated object, a
    /// length form other than 1–2 bytes, or a length that runs past the end.
    public static func parseAll(_ bytes: [UInt8]) -> [TLV]? {
        var out: [TLV] = []
        var i = 0
        while i < bytes.count {
            guard let (tlv, next) = parse(bytes, at: i) else { return nil }
            out.append(tlv)
            i = next
        }
        return out
    }

    /// Parses one TLV at `offset`; returns it and the offset after it.
    public static func parse(_ bytes: [UInt8], at offset: Int) -> (TLV, Int)? {
        guard offset >= 0, offset + 2 <= bytes.count else { return nil }
        let tag = bytes[offset]
        var i = offset + 1
        var length = Int(bytes[i])
        i += 1
        if length == 0x81 {
            guard i < bytes.count else { return nil }
            length = Int(bytes[i])
            i += 1
        } else if length == 0x82 {
            guard i + 1 < bytes.count else { return nil }
            length = Int(bytes[i]) << 8 | Int(bytes[i + 1])
            i += 2
        } else if length > 0x80 || length == 0x80 {
            return nil  // indefinite or longer length forms are not used by YKOATH
        }
        guard length <= bytes.count - i else { return nil }
        return (TLV(tag, Array(bytes[i..<(i + length)])), i + length)
    }
}

extension Array where Element == TLV {
    /// The value of the first object with `tag`.
    public func first(tag: UInt8) -> [UInt8]? { first(where: { $0.tag == tag })?.value }
    /// All objects concatenated.
    public var encoded: [UInt8] { flatMap { $0.encoded } }
}
