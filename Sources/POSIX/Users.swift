internal import CPOSIX

/// The user database and the process's own identity.
public enum Users {
    /// One passwd entry through a reentrant lookup (getpwnam_r or getpwuid_r), read by
    /// `field` while its strings are still in the buffer; nil when there is none.
    private static func entry<R>(_ lookup: (UnsafeMutablePointer<passwd>, UnsafeMutablePointer<CChar>, Int,
                                            UnsafeMutablePointer<UnsafeMutablePointer<passwd>?>) -> Int32,
                                 _ field: (passwd) -> R?) -> R? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        // Uninitialised: getpwnam_r writes what it returns (zero-filling 16 KiB first was
        // a tenth of a login's instructions in Embedded Swift, where it is a loop).
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 16384) { b -> R? in
            guard let base = b.baseAddress, lookup(&entry, base, b.count, &result) == 0, result != nil else { return nil }
            return field(entry)
        }
    }

    /// The uid of `name` through getpwnam_r(3); nil when there is no such user.
    public static func uid(of name: String) -> UInt32? {
        name.withCString { n in entry({ getpwnam_r(n, $0, $1, $2, $3) }) { $0.pw_uid } }
    }

    /// The name service's own spelling of `name` (its `pw_name`, getpwnam_r(3)); nil when
    /// it does not resolve. A case-insensitive or aliasing service (SSSD or winbind against
    /// Active Directory) resolves `ALICE` or `alice@domain` to `alice`.
    public static func canonicalName(of name: String) -> String? { lookup(name)?.name }

    /// `name`'s entry: the name service's spelling and the uid, in one lookup.
    public static func lookup(_ name: String) -> (name: String, uid: UInt32)? {
        name.withCString { n in entry({ getpwnam_r(n, $0, $1, $2, $3) }) { e in e.pw_name.map { (String(cString: $0), e.pw_uid) } } }
    }

    /// The groups `name` is a member of, primary and supplementary, as the name service
    /// (files, SSSD, LDAP) gives them through getgrouplist(3); nil when the user does not
    /// resolve or the list cannot be read.
    public static func groupIDs(of name: String) -> [UInt32]? {
        guard let primary = name.withCString({ n in entry({ getpwnam_r(n, $0, $1, $2, $3) }) { $0.pw_gid } }) else { return nil }
        var capacity: Int32 = 64
        while capacity <= 65_536 {
            var count = capacity
            var ids = [gid_t](repeating: 0, count: Int(capacity))
            let got = name.withCString { n in ids.withUnsafeMutableBufferPointer { cposix_getgrouplist(n, primary, $0.baseAddress, &count) } }
            if got == -2 { return nil }
            if got >= 0 { return Array(ids.prefix(Int(count))).map { UInt32($0) } }
            // -1: too small; count now says how many there are.
            capacity = max(capacity * 2, count)
        }
        return nil
    }

    /// One group entry through a reentrant lookup (getgrnam_r or getgrgid_r), read by
    /// `field` while its strings are still in the buffer; nil when there is none.
    private static func groupEntry<R>(_ lookup: (UnsafeMutablePointer<group>, UnsafeMutablePointer<CChar>, Int,
                                                 UnsafeMutablePointer<UnsafeMutablePointer<group>?>) -> Int32,
                                      _ field: (group) -> R?) -> R? {
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 16384) { b -> R? in
            guard let base = b.baseAddress, lookup(&entry, base, b.count, &result) == 0, result != nil else { return nil }
            return field(entry)
        }
    }

    /// The gid of the group `name` through getgrnam_r(3); nil when there is no such group.
    public static func groupID(of name: String) -> UInt32? {
        name.withCString { n in groupEntry({ cposix_getgrnam_r(n, $0, $1, $2, $3) }) { $0.gr_gid } }
    }

    /// The name of group `id` through getgrgid_r(3); nil when there is no such group.
    public static func groupName(of id: UInt32) -> String? {
        groupEntry({ cposix_getgrgid_r(gid_t(id), $0, $1, $2, $3) }) { $0.gr_name.map { String(cString: $0) } }
    }

    /// The login name of `uid` through getpwuid_r(3).
    public static func name(of uid: UInt32) -> String? {
        entry({ getpwuid_r(uid, $0, $1, $2, $3) }) { $0.pw_name.map { String(cString: $0) } }
    }

    /// getuid(2): who started the process.
    public static var realUID: UInt32 { getuid() }
    /// geteuid(2): whose rights the process has.
    public static var effectiveUID: UInt32 { geteuid() }
}
