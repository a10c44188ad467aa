import OTPCore
import TokenStore
import Verifier

/// Puts what an importer read into a user's record without weakening anything:
/// importing the same file twice changes nothing the first import did not.
public enum RecordImport {
    /// What one merge did, for the admin.
    public struct Report: Sendable, Equatable {
        /// The token's id in the record, and whether it is new (false: the same secret was
        /// there already, and only its replay state moved on).
        public var tokenID: String
        public var newToken: Bool
        public var recoveryAdded: Int
        /// Scratch codes already present, or already used, and so not added.
        public var recoverySkipped: Int
        /// The pam_oath PIN became the simple password (only when asked for by name).
        public var pinSet: Bool

        public init(tokenID: String, newToken: Bool, recoveryAdded: Int, recoverySkipped: Int, pinSet: Bool) {
            self.tokenID = tokenID
            self.newToken = newToken
            self.recoveryAdded = recoveryAdded
            self.recoverySkipped = recoverySkipped
            self.pinSet = pinSet
        }
    }

    /// Merges `item` into `record` (nil: a new record). `pinAsPassword`: make a pam_oath
    /// PIN the simple password; otherwise the PIN is dropped, since on its own it is not a
    /// second factor. Returns nil when a hash could not be made.
    public static func merge(_ item: Importers.Imported, into record: UserRecord?, now: Int64,
                             pinAsPassword: Bool) -> (UserRecord, Report)? {
        var r = record ?? UserRecord(user: item.user, created: now)
        var report = Report(tokenID: "", newToken: false, recoveryAdded: 0, recoverySkipped: 0, pinSet: false)
        if let i = r.tokens.firstIndex(where: { $0.sameCredential(as: item.token) }) {
            r.tokens[i].absorbReplayState(of: item.token)
            report.tokenID = r.tokens[i].id
        } else {
            var token = item.token
            token.id = r.nextTokenID(prefix: token.id)
            r.tokens.append(token)
            report.tokenID = token.id
            report.newToken = true
        }
        for code in item.scratchCodes {
            if RecoveryCode.isAmong(code, r.recoveryCodes) || RecoveryCode.isAmong(code, r.usedRecoveryCodes) {
                report.recoverySkipped += 1
                continue
            }
            guard let normal = RecoveryCode.normalise(code), let hash = PasswordHash.make(normal) else { return nil }
            r.recoveryCodes.append(hash)
            report.recoveryAdded += 1
        }
        if pinAsPassword, let pin = item.pin {
            guard let hash = PasswordHash.make(pin) else { return nil }
            r.passwordHash = hash
            report.pinSet = true
        }
        return (r, report)
    }
}
