/// Base32 (RFC 4648 §6), the alphabet authenticator apps and otpauth URIs use.
public enum Base32 {
    /// The symbol of a 5-bit value: A–Z for 0–25, 2–7 for 26–31 (computed: a table would be
    /// a global to initialise, and bounds to check, at every record write).
    @inline(__always)
    static func symbol(_ v: UInt32) -> UInt8 {
        UInt8(truncatingIfNeeded: v < 26 ? 0x41 + v : 0x32 - 26 + v)
    }

    /// Encodes bytes; `padding` adds the `=` characters of RFC 4648 (URIs leave them out).
    public static func encode(_ bytes: [UInt8], padding: Bool = false) -> String {
        var out = encodeBytes(bytes, padding: padding)
        defer { ConstantTime.wipe(&out) }
        return String(decoding: out, as: UTF8.self)
    }

    /// `encode` as UTF-8 bytes (a record is written from bytes; a secret's text is wiped).
    public static func encodeBytes(_ bytes: some Collection<UInt8>, padding: Bool = false) -> [UInt8] {
        let symbols = (bytes.count * 8 + 4) / 5
        let length = padding ? (symbols + 7) / 8 * 8 : symbols
        return [UInt8](unsafeUninitializedCapacity: length) { out, initialized in
            var buffer: UInt32 = 0
            var bits: UInt32 = 0
            var i = 0
            // `i < length` always holds (length counts every symbol); checked anyway, as
            // these writes are unchecked in a release build.
            for byte in bytes {
                buffer = (buffer << 8) | UInt32(byte)
                bits += 8
                while bits >= 5 && i < length {
                    bits -= 5
                    out[i] = symbol((buffer >> bits) & 0x1F)
                    i += 1
                }
            }
            if bits > 0 && i < length { out[i] = symbol((buffer << (5 - bits)) & 0x1F); i += 1 }
            while i < length { out[i] = 0x3D; i += 1 }
            initialized = length
        }
    }

    /// Decodes Base32 the way people type it: case-insensitive, spaces and hyphens
    /// ignored, padding optional. A character outside the alphabet is refused with its
    /// position (counting from 1), as is padding in the middle.
    public static func decode(_ text: String) throws(OTPError) -> [UInt8] {
        try decode(values: text.unicodeScalars.lazy.map { $0.value }, capacity: text.utf8.count)
    }

    /// The same from a record's bytes, with no String (nor copy of the secret) between;
    /// a byte that is not ASCII is reported by its value.
    public static func decode(bytes: ArraySlice<UInt8>) throws(OTPError) -> [UInt8] {
        try decode(values: bytes.lazy.map { UInt32($0) }, capacity: bytes.count)
    }

    private static func decode<S: Sequence<UInt32>>(values: S, capacity: Int) throws(OTPError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(capacity * 5 / 8 + 1)
        var buffer: UInt32 = 0
        var bits = 0
        var sawPadding = false
        var position = 0
        for v in values {
            position += 1
            if v == 0x20 || v == 0x2D || v == 0x09 { continue }
            if v == 0x3D { sawPadding = true; continue }
            let value: UInt32
            switch v {
            case 0x41...0x5A: value = v - 0x41          // A-Z
            case 0x61...0x7A: value = v - 0x61          // a-z
            case 0x32...0x37: value = v - 0x32 + 26     // 2-7
            default: throw .invalidBase32(position: position, character: printable(v))
            }
            if sawPadding { throw .invalidBase32(position: position, character: printable(v)) }
            buffer = ((buffer << 5) | value) & 0xFFFF
            bits += 5
            if bits >= 8 {
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits - 8)))
                bits -= 8
            }
        }
        return out
    }

    private static func printable(_ v: UInt32) -> String {
        guard let s = Unicode.Scalar(v) else { return msg("U+\(String(v, radix: 16, uppercase: true))") }
        return printable(s)
    }

    private static func printable(_ s: Unicode.Scalar) -> String {
        (0x21...0x7E).contains(s.value) ? msg("'\(Character(s))'") : msg("U+\(String(s.value, radix: 16, uppercase: true))")
    }
}
