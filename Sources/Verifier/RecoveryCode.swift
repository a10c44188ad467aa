import OTPCore
import TokenStore

/// One-time recovery codes: `xxxx-xxxx-xxxx` from the Base32 alphabet (ours), or the
/// 8-digit scratch codes imported from google-authenticator; hashed like the simple
/// password, each removed from the record when used.
public enum RecoveryCode {
    /// Normalised form (lower case, no separators) when `text` looks like a recovery code.
    public static func normalise(_ text: String) -> String? {
        var out: [UInt8] = []
        for byte in text.utf8 where byte != UInt8(ascii: "-") && byte != UInt8(ascii: " ") {
            var b = byte
            if (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b) { b += 32 }  // ASCII lower case
            guard (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) else {
                return nil
            }
            out.append(b)
            if out.count > 12 { return nil }
        }
        let isDigit = { (b: UInt8) in (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) }
        let base32 = out.count == 12 && out.allSatisfy { !isDigit($0) || (UInt8(ascii: "2")...UInt8(ascii: "7")).contains($0) }
        let scratch = out.count == 8 && out.allSatisfy(isDigit)
        return base32 || scratch ? String(decoding: out, as: UTF8.self) : nil
    }

    /// Uses up the matching code in `record` (its hash moves to the used list, so that an
    /// import cannot bring it back); true if one matched.
    public static func consume(_ typed: String, in record: inout UserRecord) -> Bool {
        guard let code = normalise(typed) else { return false }
        for (i, hash) in record.recoveryCodes.enumerated() where PasswordHash.verify(code, hash: hash) {
            record.markRecoveryUsed(at: i)
            return true
        }
        return false
    }

    /// Whether `code` (normalised) is among `hashes`.
    public static func isAmong(_ code: String, _ hashes: [String]) -> Bool {
        guard let normal = normalise(code) else { return false }
        return hashes.contains { PasswordHash.verify(normal, hash: $0) }
    }
}
