import OTPCore
import Verifier

extension RecoveryCode {
    /// A fresh code, formatted for display.
    public static func generate() -> String? {
        guard let bytes = SecureRandom.bytes(8) else { return nil }
        let text = Base32.encode(bytes).lowercased().prefix(12)
        return msg("\(text.prefix(4))-\(text.dropFirst(4).prefix(4))-\(text.dropFirst(8))")
    }
}
