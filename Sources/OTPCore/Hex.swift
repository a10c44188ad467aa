/// Lower-case hexadecimal, for device ids and test vectors.
public enum Hex {
    public static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes hex digits (either case; spaces ignored). Odd length or a bad digit throws.
    public static func decode(_ text: String) throws(OTPError) -> [UInt8] {
        var out: [UInt8] = []
        var high: UInt8?
        var position = 0
        for byte in text.utf8 {
            position += 1
            if byte == 0x20 { continue }
            let nibble: UInt8
            switch byte {
            case 0x30...0x39: nibble = byte - 0x30
            case 0x41...0x46: nibble = byte - 0x41 + 10
            case 0x61...0x66: nibble = byte - 0x61 + 10
            default: throw .invalidHex(position: position)
            }
            if let h = high { out.append(h << 4 | nibble); high = nil } else { high = nibble }
        }
        if high != nil { throw .invalidHex(position: position) }
        return out
    }
}

extension String {
    /// A–Z turned into a–z, every other byte left alone: enough for algorithm names, hex
    /// and device ids, and free of the Unicode case tables `lowercased()` pulls into the
    /// module.
    public var asciiLowercased: String {
        String(decoding: utf8.map { (0x41...0x5A).contains($0) ? $0 + 0x20 : $0 }, as: UTF8.self)
    }
}

extension String {
    /// Splits at every `separator` byte, as `split` does but over UTF-8 bytes: no grapheme
    /// breaking, which makes parsing a record ten times cheaper and keeps "\r\n" two bytes.
    /// `omittingEmpty` drops empty pieces (`split`'s default).
    public func splitBytes(_ separator: UInt8, maxSplits: Int = Int.max, omittingEmpty: Bool = true) -> [String] {
        var out: [String] = []
        let bytes = utf8
        var start = bytes.startIndex
        var i = bytes.startIndex
        while i != bytes.endIndex {
            if bytes[i] == separator && out.count < maxSplits {
                if !(omittingEmpty && start == i) { out.append(String(decoding: bytes[start..<i], as: UTF8.self)) }
                start = bytes.index(after: i)
            }
            i = bytes.index(after: i)
        }
        if !(omittingEmpty && start == bytes.endIndex) { out.append(String(decoding: bytes[start..<bytes.endIndex], as: UTF8.self)) }
        return out
    }

    /// Whether the first byte is `byte`.
    public func startsWith(byte: UInt8) -> Bool { utf8.first == byte }
}
