import OTPCore
import POSIX
import SmartOTPAuth
import TokenStore
import Verifier

/// The system clock.
public struct SystemClock: Clock {
    public init() {}
    public func now() -> Int64 { Clocks.unixTime() }
}

/// The system's user database, as the record service needs it.
public enum SystemUsers {
    /// Whether `user` is root (uid 0, whatever the name).
    public static func isRoot(_ user: UserName) -> Bool { Users.uid(of: user.value) == 0 }
}

extension LocalRecords {
    /// The record service over `store` with root told apart through the user database;
    /// `known`, a user already looked up (the login's), is told apart without asking again
    /// (each lookup reads the name service: tens of thousands of instructions).
    public static func system(store: S, policy: Policy, known: (name: String, uid: UInt32)? = nil) -> LocalRecords<S> {
        guard let known else { return LocalRecords(store: store, policy: policy, isRoot: SystemUsers.isRoot) }
        return LocalRecords(store: store, policy: policy) { $0.value.equals(known.name) ? known.uid == 0 : SystemUsers.isRoot($0) }
    }
}

/// The record service a host uses: the store itself when it runs as root, or the setuid
/// helper when it runs as the user (a screen locker). A concrete type, not an existential,
/// so that it builds in Embedded Swift.
public enum SystemRecords: RecordService {
    case local(LocalRecords<FileStore>)
    case helper(HelperRecords)
    case fleet(SessionRecords)

    /// Chooses by the effective uid, as pam_unix chooses unix_chkpwd: root asks the store,
    /// or with `server=` the fleet client; a user's process asks the setuid helper, which
    /// makes the same choice with root's settings.
    /// `service` and `remoteHost` (PAM_SERVICE, PAM_RHOST) go to the fleet's audit trail.
    /// `known`: the login's user as the name service gave it (name and uid); `arguments`:
    /// the module's, which the fleet client reads as the module does.
    public init(_ config: ModuleConfig, service: String = "", remoteHost: String = "", known: (name: String, uid: UInt32)? = nil,
                arguments: [Setting] = []) {
        if Users.effectiveUID != 0 {
            self = .helper(HelperRecords(path: config.helper ?? Installation.helper))
        } else if !config.servers.isEmpty {
            self = .fleet(SessionRecords(client: config.client ?? Installation.fleetClient, agent: config.agent, serverTimeout: config.serverTimeout, service: service, remoteHost: remoteHost,
                                         settings: arguments))
        } else {
            self = .local(.system(store: FileStore(root: config.store), policy: config.policy, known: known))
        }
    }

    public func summary(_ user: UserName, now: Int64) throws(RecordError) -> RecordSummary? {
        switch self {
        case .local(let r): return try r.summary(user, now: now)
        case .helper(let r): return try r.summary(user, now: now)
        case .fleet(let r): return try r.summary(user, now: now)
        }
    }

    public func issueChallenge(for user: UserName, now: Int64) throws(RecordError) -> [UInt8] {
        switch self {
        case .local(let r): return try r.issueChallenge(for: user, now: now)
        case .helper(let r): return try r.issueChallenge(for: user, now: now)
        case .fleet(let r): return try r.issueChallenge(for: user, now: now)
        }
    }

    public func accessAnswers(for user: UserName, tokenID: String, cardChallenge: [UInt8], ourChallenge: [UInt8], now: Int64) throws(RecordError) -> AccessAnswers? {
        switch self {
        case .local(let r): return try r.accessAnswers(for: user, tokenID: tokenID, cardChallenge: cardChallenge, ourChallenge: ourChallenge, now: now)
        case .helper(let r): return try r.accessAnswers(for: user, tokenID: tokenID, cardChallenge: cardChallenge, ourChallenge: ourChallenge, now: now)
        case .fleet(let r): return try r.accessAnswers(for: user, tokenID: tokenID, cardChallenge: cardChallenge, ourChallenge: ourChallenge, now: now)
        }
    }

    public func perform(_ operation: RecordOperation, for user: UserName, now: Int64) throws(RecordError) -> Attempt {
        switch self {
        case .local(let r): return try r.perform(operation, for: user, now: now)
        case .helper(let r): return try r.perform(operation, for: user, now: now)
        case .fleet(let r): return try r.perform(operation, for: user, now: now)
        }
    }
}
