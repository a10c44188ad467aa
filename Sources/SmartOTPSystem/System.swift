import POSIX
import SmartOTPAuth
import TokenStore

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
    /// The record service over `store` with root told apart through the user database.
    public static func system(store: any Store, policy: Policy) -> LocalRecords {
        LocalRecords(store: store, policy: policy, isRoot: SystemUsers.isRoot)
    }
}
