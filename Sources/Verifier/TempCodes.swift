import OTPCore
import TokenStore

/// Temporary codes for a lost card: `xxxx-xxxx-xxxx` (a recovery code's shape and
/// alphabet, so every prompt that takes one takes it), hashed like the simple password,
/// each good until its end for its number of uses. Checked after the tokens and the
/// recovery codes; one that has ended or is used up is removed from the record at the
/// next write.
public enum TempCodes {
    /// How many are still good at `now`.
    public static func active(in record: UserRecord, now: Int64) -> Int {
        record.tempCodes.filter { $0.until > now && $0.uses > 0 }.count
    }

    /// Uses `typed` up once if it matches a good code (true), and drops the codes that have
    /// ended or are used up.
    public static func consume(_ typed: String, in record: inout UserRecord, now: Int64) -> Bool {
        record.tempCodes.removeAll { $0.until <= now || $0.uses <= 0 }
        guard !record.tempCodes.isEmpty, let code = RecoveryCode.normalise(typed) else { return false }
        for i in record.tempCodes.indices where PasswordHash.verify(code, hash: record.tempCodes[i].hash) {
            record.tempCodes[i].uses -= 1
            if record.tempCodes[i].uses == 0 { record.tempCodes.remove(at: i) }
            return true
        }
        return false
    }
}
