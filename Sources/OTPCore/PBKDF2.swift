/// PBKDF2 (RFC 8018 §5.2) with HMAC-SHA1, as YKOATH derives an access key from a password.
public enum PBKDF2 {
    public static func sha1(password: [UInt8], salt: [UInt8], iterations: Int, length: Int) -> [UInt8]? {
        guard iterations > 0, iterations <= 10_000_000, length > 0, length <= 1024 else { return nil }
        let prf = password.withUnsafeBytes { HMACKey(.sha1, key: $0) }
        var out: [UInt8] = []
        var blockIndex: UInt32 = 1
        while out.count < length {
            var u = prf.authenticate(salt + [UInt8(blockIndex >> 24), UInt8((blockIndex >> 16) & 0xFF),
                                             UInt8((blockIndex >> 8) & 0xFF), UInt8(blockIndex & 0xFF)])
            var t = u
            for _ in 1..<iterations {
                u = prf.authenticate(u)
                for j in t.indices { t[j] ^= u[j] }
            }
            out += t
            blockIndex &+= 1
        }
        return Array(out.prefix(length))
    }
}
