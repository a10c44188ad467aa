#if canImport(Glibc)
import Glibc
#endif
import POSIX
import Synchronization

/// One `scope` line of smartotpd.conf: host certificates whose name matches `pattern`
/// (fnmatch(3): `web*.example.org`) may ask about members of `groups` (`*`: anyone).
public struct HostScope: Sendable, Equatable {
    public var pattern: String
    public var groups: [String]

    public init(pattern: String, groups: [String]) {
        self.pattern = pattern
        self.groups = groups
    }

    /// `PATTERN GROUP[,GROUP…]`; nil when it is not that.
    public init?(line: String) {
        let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard words.count == 2, words[0].utf8.count <= 255, words[0].utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        let groups = words[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard !groups.isEmpty, groups.allSatisfy({ g in
            !g.isEmpty && g.utf8.count <= 64 && g.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }
        }) else { return nil }
        self.init(pattern: words[0], groups: groups)
    }

    func matches(host: String) -> Bool { fnmatch(pattern, host, 0) == 0 }
}

/// Which users each host may ask about (`scope` lines). No line: every host, every user.
/// With lines: the first line whose pattern matches the host's certificate name decides,
/// and the host asks about a user only when that line lists a group the user is a member
/// of (or `*`); a host that matches no line may ask about no one. Membership is the verifier's own name service's (getgrouplist(3):
/// files, SSSD, LDAP), remembered for a minute.
public final class HostScopes: Sendable {
    public let scopes: [HostScope]
    /// A user's groups by name; nil when the user is unknown to the name service.
    let groupsOf: @Sendable (String) -> Set<String>?
    let clock: @Sendable () -> Int64
    private let cache = Mutex<[String: (at: Int64, groups: Set<String>?)]>([:])
    static let remembered: Int64 = 60

    public init(_ scopes: [HostScope], groupsOf: @escaping @Sendable (String) -> Set<String>? = HostScopes.systemGroups,
                clock: @escaping @Sendable () -> Int64 = { Int64(time(nil)) }) {
        self.scopes = scopes
        self.groupsOf = groupsOf
        self.clock = clock
    }

    /// Why `host` may not ask about `user`; nil when it may.
    public func refusal(host: String, user: String) -> String? {
        guard !scopes.isEmpty else { return nil }
        // The first line whose pattern matches decides (a catch-all such as `* *` goes last).
        guard let line = scopes.first(where: { $0.matches(host: host) }) else { return "no scope line names this host" }
        let wanted = Set(line.groups)
        if wanted.contains("*") { return nil }
        guard let groups = groups(of: user) else { return "the verifier's name service does not know the user" }
        return groups.isDisjoint(with: wanted) ? "the user is in none of the groups this host may ask about" : nil
    }

    func groups(of user: String) -> Set<String>? {
        let now = clock()
        if let hit = cache.withLock({ $0[user] }), now - hit.at < Self.remembered { return hit.groups }
        let found = groupsOf(user)
        cache.withLock { c in
            if c.count > 10_000 { c = c.filter { now - $0.value.at < Self.remembered } }
            c[user] = (now, found)
        }
        return found
    }

    /// The names of every group `user` is in, as the name service gives them (POSIX's
    /// getgrouplist, then each gid's name).
    public static let systemGroups: @Sendable (String) -> Set<String>? = { user in
        Users.groupIDs(of: user).map { Set($0.compactMap(Users.groupName(of:))) }
    }
}
