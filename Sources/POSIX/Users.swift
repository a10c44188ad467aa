internal import CPOSIX

/// The user database and the process's own identity.
public enum Users {
    /// The uid of `name` through getpwnam_r(3); nil when there is no such user.
    public static func uid(of name: String) -> UInt32? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.pw_uid
    }

    /// The login name of `uid` through getpwuid_r(3).
    public static func name(of uid: UInt32) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else {
            return nil
        }
        return String(cString: name)
    }

    /// getuid(2): who started the process.
    public static var realUID: UInt32 { getuid() }
    /// geteuid(2): whose rights the process has.
    public static var effectiveUID: UInt32 { geteuid() }
}
