import OTPCore
import TokenStore
import Verifier

/// A verdict a user's row remembers by the id of the request that got it. A host's fleet
/// client sends one id with a request and the same id to every replica it tries; when its
/// first answer is lost (the replica's deadline passed after the transaction committed, the
/// connection dropped), the next replica finds the id and answers the verdict already
/// committed instead of counting the attempt again, or calling the code replayed.
///
/// An id is bound to what it asked (`binding`: a keyed hash of the host certificate's
/// serial, the operation and the request's body): the same id with anything else is a new
/// request, so an id read from a log gets nobody a verdict of their own choosing.
public struct RememberedVerdict: Sendable, Equatable {
    public var requestID: String
    public var binding: String
    public var attempt: Attempt

    public init(requestID: String, binding: String, attempt: Attempt) {
        self.requestID = requestID
        self.binding = binding
        self.attempt = attempt
    }

    /// As a row keeps it: `ID BINDING VERDICT TOKEN LOCK`, one word each (TOKEN `-` when
    /// the verdict names none; LOCK `open`, `forever` or `until:UNIX`). No secret.
    public var stored: String {
        let (verdict, token): (String, String)
        switch attempt.verdict {
        case .accepted(.token(let id)): (verdict, token) = ("accepted-token", id)
        case .accepted(.password): (verdict, token) = ("accepted-password", "-")
        case .accepted(.recoveryCode): (verdict, token) = ("accepted-recovery", "-")
        case .accepted(.tempCode): (verdict, token) = ("accepted-temp", "-")
        case .replayed(let id): (verdict, token) = ("replayed", id)
        case .rejected: (verdict, token) = ("rejected", "-")
        case .locked: (verdict, token) = ("locked", "-")
        }
        let lock: String
        switch attempt.lock {
        case .open: lock = "open"
        case .lockedForGood: lock = "forever"
        case .lockedUntil(let t): lock = "until:\(t)"
        }
        return [requestID, binding, verdict, token, lock].joined(separator: " ")
    }

    /// Reads what `stored` wrote; nil when it is anything else.
    public init?(stored: String) {
        let w = stored.splitBytes(UInt8(ascii: " "), omittingEmpty: false)
        guard w.count == 5, RecentRequests.isValid(w[0]), !w[1].isEmpty else { return nil }
        let verdict: RecordVerdict
        switch (w[2], w[3]) {
        case ("accepted-token", let id) where Token.isValidID(id): verdict = .accepted(.token(id))
        case ("accepted-password", "-"): verdict = .accepted(.password)
        case ("accepted-recovery", "-"): verdict = .accepted(.recoveryCode)
        case ("accepted-temp", "-"): verdict = .accepted(.tempCode)
        case ("replayed", let id) where Token.isValidID(id): verdict = .replayed(tokenID: id)
        case ("rejected", "-"): verdict = .rejected
        case ("locked", "-"): verdict = .locked
        default: return nil
        }
        let lock: LockState
        if w[4] == "open" { lock = .open } else if w[4] == "forever" { lock = .lockedForGood }
        else if w[4].hasPrefix("until:"), let t = Int64(w[4].dropFirst(6)) { lock = .lockedUntil(t) }
        else { return nil }
        self.init(requestID: w[0], binding: w[1], attempt: Attempt(verdict, lock: lock))
    }
}

/// The verdicts a row remembers: at most `kept`, newest last (a retry comes within one
/// login's seconds).
public enum RecentRequests {
    public static let kept = 4

    /// A request id as the fleet client makes it: 16-64 characters of [0-9A-Za-z-].
    public static func isValid(_ id: String) -> Bool {
        (16...64).contains(id.utf8.count) && id.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D
        }
    }

    /// The verdict committed for `id` with this `binding`, if the row remembers it.
    public static func find(_ recent: [RememberedVerdict], id: String, binding: String) -> Attempt? {
        guard isValid(id) else { return nil }
        return recent.last { $0.requestID == id && $0.binding == binding }?.attempt
    }

    /// `recent` with `verdict` remembered (the oldest beyond `kept` forgotten).
    public static func adding(_ recent: [RememberedVerdict], _ verdict: RememberedVerdict) -> [RememberedVerdict] {
        Array((recent.filter { $0.requestID != verdict.requestID } + [verdict]).suffix(kept))
    }
}
