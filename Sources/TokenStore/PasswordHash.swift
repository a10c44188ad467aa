import CCryptOnUse
import OTPCore

/// The simple password and recovery codes, hashed with yescrypt through libxcrypt:
/// the scheme Debian uses in /etc/shadow.
public enum PasswordHash {
    /// Hashes `password` with a fresh random salt (`crypt_gensalt_rn("$y$", 0, NULL, 0)`
    /// makes libxcrypt draw the salt from the kernel). Returns nil on failure.
    /// A password holding NUL is refused (nil): crypt(3) stops at the first NUL, so
    /// "\0\0\0\0" would become the empty password.
    public static func make(_ password: String) -> String? {
        guard acceptable(password) else { return nil }
        var setting = [CChar](repeating: 0, count: Int(CRYPT_GENSALT_OUTPUT_SIZE))
        let made = setting.withUnsafeMutableBufferPointer { buf in
            lou_crypt_gensalt_rn("$y$", 0, nil, 0, buf.baseAddress, Int32(buf.count))
        }
        guard made != nil else { return nil }
        let settingString = String(decoding: setting.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return hash(password, setting: settingString)
    }

    /// Whether crypt(3) sees all of `password`: no NUL byte in it.
    public static func acceptable(_ password: String) -> Bool { !password.utf8.contains(0) }

    /// crypt_r(3) with a heap-allocated `crypt_data` (32 KiB: too big for a PAM stack).
    static func hash(_ password: String, setting: String) -> String? {
        let data = UnsafeMutablePointer<crypt_data>.allocate(capacity: 1)
        data.initialize(to: crypt_data())
        defer {
            // The buffer held the password and its hash: wipe before freeing.
            UnsafeMutableRawPointer(data).withMemoryRebound(to: UInt8.self, capacity: MemoryLayout<crypt_data>.size) {
                OTPCore.ConstantTime.wipeRaw($0, count: MemoryLayout<crypt_data>.size)
            }
            data.deallocate()
        }
        guard let out = lou_crypt_r(password, setting, data) else { return nil }
        let result = String(cString: out)
        // libxcrypt signals failure with a string starting with '*'.
        return result.utf8.begins(with: "*") ? nil : result
    }

    /// Checks `password` against a stored hash in constant time. A malformed hash fails.
    public static func verify(_ password: String, hash stored: String) -> Bool {
        guard acceptable(password), !stored.isEmpty, !stored.utf8.begins(with: "*"), !stored.utf8.begins(with: "!"),
              let computed = hash(password, setting: stored) else { return false }
        return ConstantTime.equals(computed, stored)
    }
}
