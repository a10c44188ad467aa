import OTPCore
import TokenStore

/// One user's record as read inside a database transaction (`SELECT … FOR UPDATE`): a
/// `Store` of one record, so that smartotpd decides with `LocalRecords`, the very logic the
/// file store runs. What the logic commits stays here until the server writes it back and
/// COMMITs; nothing is answered before that.
public final class TransactionRecord: Store {
    public let user: UserName
    public private(set) var record: UserRecord?
    /// Whether the logic committed a change (a count, a used code, a challenge…).
    public private(set) var changed = false

    public init(user: UserName, record: UserRecord?) {
        self.user = user
        self.record = record
    }

    public func read(_ name: UserName) throws(StoreError) -> UserRecord? {
        name == user ? record : nil
    }

    public func withLock<R>(_ name: UserName,
                            _ body: (UserRecord?, _ commit: (UserRecord?) throws(StoreError) -> Void) throws(StoreError) -> R) throws(StoreError) -> R {
        guard name == user else { throw .invalidValue(msg("this transaction holds \(user), not \(name)")) }
        return try body(record) { (next: UserRecord?) throws(StoreError) in
            if let next, next.user != user { throw .invalidValue(msg("record user does not match \(user)")) }
            record = next
            changed = true
        }
    }
}

/// What smartotpd answers a host, decided on one record.
public struct FleetDecision: Sendable {
    /// The answer, typed; smartotpd encodes it at its HTTP edge and counts its metrics
    /// from it (`reply.result`).
    public var reply: HelperProtocol.Reply
    /// The record to write back before COMMIT, when `changed`.
    public var record: UserRecord?
    public var changed: Bool
    /// An answer given again for a retried request id: nothing was decided or counted now.
    public var repeated = false

    public init(reply: HelperProtocol.Reply, record: UserRecord?, changed: Bool, repeated: Bool = false) {
        self.reply = reply
        self.record = record
        self.changed = changed
        self.repeated = repeated
    }
}

public enum FleetVerifier {
    /// Runs `request` for `user` on `record` with the server's `policy`, on behalf of
    /// `host` (a tap challenge is issued to it, and answered only by it). Root is told by
    /// name: the server does not know the hosts' user databases.
    ///
    /// `rootPassword` false: root's simple password is neither offered nor accepted (the
    /// record keeps it: the fleet's policy may allow it again).
    public static func decide(_ request: HelperProtocol.Request, user: UserName, record: UserRecord?,
                              policy: Policy, host: String, now: Int64, rootPassword: Bool = true) throws(RecordError) -> FleetDecision {
        let hidden = user.value.equals("root") && !rootPassword ? record?.passwordHash : nil
        var shown = record
        if hidden != nil { shown?.passwordHash = nil }
        let held = TransactionRecord(user: user, record: shown)
        let records = LocalRecords(store: held, policy: policy, requester: host, isRoot: { $0.value.equals("root") })
        let reply = try HelperProtocol.answer(request, for: user, by: records, now: now)
        var kept = held.record
        if let hidden, kept != nil { kept?.passwordHash = hidden }
        return FleetDecision(reply: reply, record: kept, changed: held.changed)
    }
}
