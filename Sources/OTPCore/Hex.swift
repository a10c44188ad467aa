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
