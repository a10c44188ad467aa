#if canImport(Glibc)
import Glibc
#endif
import OTPCore

/// The per-user records a `LoginFlow` reads and updates.
///
/// `update` is the only way to change a record: it holds that user's lock while it
/// reads, lets the caller change the record, and writes it back atomically, so two
/// logins of one user serialise and logins of different users never wait on each other.
public protocol Store: Sendable {
    /// The user's record, or nil when the user has none.
    func read(_ user: UserName) throws(StoreError) -> UserRecord?
    /// Holds the user's lock while `body` runs. `body` gets the record as it is (nil: none)
    /// and `commit`, which writes a new state durably before it returns (nil removes the
    /// record). `commit` may be called more than once, all under the one lock: a login
    /// counts its attempt first, then decides, then clears the count on success.
    func withLock<R>(_ user: UserName,
                     _ body: (UserRecord?, _ commit: (UserRecord?) throws(StoreError) -> Void) throws -> R) throws -> R
}

extension Store {
    /// Locked read-modify-write. `body` gets the current record (nil: none) and may
    /// change it; setting it to nil removes it. Nothing is written when `body` throws or
    /// leaves the record unchanged (`changed` false).
    public func update<R>(_ user: UserName, _ body: (inout UserRecord?, inout Bool) throws -> R) throws -> R {
        try withLock(user) { current, commit in
            var record = current
            var changed = false
            let result = try body(&record, &changed)
            if changed { try commit(record) }
            return result
        }
    }
}

/// The embedded store: one file per user under `root/users`, a lock file per user under
/// `root/locks` (never deleted, so every locker locks the same inode).
///
/// Every record and directory must be owned by `owner` (root in production) and not
/// accessible to group or others; symbolic links are refused. Each write goes to a
/// temporary file in the same directory, is fsynced, renamed over the record, and the
/// directory is fsynced, so a crash at any instant leaves the old record or the new one.
public final class FileStore: Store {
    public let root: String
    public let owner: UInt32
    public static let defaultRoot = "/var/lib/smartotp"

    /// - Parameters:
    ///   - root: the store directory (`/var/lib/smartotp` unless `store=` says otherwise).
    ///   - owner: the uid that must own everything; root, except in tests run unprivileged.
    public init(root: String = FileStore.defaultRoot, owner: UInt32 = 0) {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r
        self.owner = owner
    }

    var usersDirectory: String { root + "/users" }
    var locksDirectory: String { root + "/locks" }
    func recordPath(_ user: UserName) -> String { usersDirectory + "/" + user.value }
    func lockPath(_ user: UserName) -> String { locksDirectory + "/" + user.value }

    /// Creates `root` (0700) if missing, then `users` and `locks`; checks all three.
    public func prepare() throws(StoreError) {
        if try Posix.lstatIfExists(root) == nil { try Posix.makeDirectory(root) }
        try checkDirectory(root)
        for dir in [usersDirectory, locksDirectory] {
            if try Posix.lstatIfExists(dir) == nil { try Posix.makeDirectory(dir) }
            try checkDirectory(dir)
        }
    }

    /// Refuses a directory that is missing, a symlink, not owned by `owner`, or open to
    /// group/others.
    func checkDirectory(_ path: String) throws(StoreError) {
        guard let st = try Posix.lstatIfExists(path) else { throw .missing(path: path) }
        if Posix.isSymlink(st) { throw .insecure(path: path, reason: "it is a symbolic link; use the real directory") }
        guard Posix.isDirectory(st) else { throw .insecure(path: path, reason: "not a directory") }
        try checkOwnership(st, path, fix: "chown \(owner) \(path) && chmod 700 \(path)")
    }

    func checkOwnership(_ st: stat, _ path: String, fix: String) throws(StoreError) {
        if st.st_uid != owner {
            throw .insecure(path: path, reason: "owned by uid \(st.st_uid), not \(owner) (fix: \(fix))")
        }
        if st.st_mode & 0o077 != 0 {
            throw .insecure(path: path, reason: "mode \(String(st.st_mode & 0o777, radix: 8)) lets group or others in (fix: \(fix))")
        }
    }

    /// A missing store is an error, never "nobody is enrolled": a typo in `store=` or an
    /// unmounted filesystem must not let everyone through `nullok`.
    public func read(_ user: UserName) throws(StoreError) -> UserRecord? {
        try checkDirectory(root)
        try checkDirectory(usersDirectory)
        return try readRecord(user)
    }

    func readRecord(_ user: UserName) throws(StoreError) -> UserRecord? {
        let path = recordPath(user)
        guard let fd = try Posix.openIfExists(path, O_RDONLY) else { return nil }
        defer { Posix.close(fd) }
        let st = try Posix.fstat(fd, path)
        guard Posix.isRegular(st) else { throw .insecure(path: path, reason: "not a regular file") }
        try checkOwnership(st, path, fix: "chown \(owner) \(path) && chmod 600 \(path)")
        guard Int(st.st_size) <= RecordFormat.maxSize else { throw .tooLarge(path: path) }
        var bytes = try Posix.readAll(fd, path, limit: RecordFormat.maxSize)
        defer { ConstantTime.wipe(&bytes) }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw .malformed(path: path, line: 1, reason: "not UTF-8 text")
        }
        let record = try RecordFormat.parse(text, path: path)
        guard record.user == user else {
            throw .malformed(path: path, line: 1, reason: "record is for user '\(record.user)', not '\(user)'")
        }
        return record
    }

    /// The store must exist (the admin tools create it with `prepare`); only the lock
    /// directory, inside a checked root, is made when missing.
    public func withLock<R>(_ user: UserName,
                            _ body: (UserRecord?, _ commit: (UserRecord?) throws(StoreError) -> Void) throws -> R) throws -> R {
        try checkDirectory(root)
        try checkDirectory(usersDirectory)
        if try Posix.lstatIfExists(locksDirectory) == nil { try Posix.makeDirectory(locksDirectory) }
        try checkDirectory(locksDirectory)
        let lock = lockPath(user)
        let lockFD = try Posix.open(lock, O_RDWR | O_CREAT, mode: 0o600)
        defer { Posix.close(lockFD) }  // closing releases the flock
        try Posix.lockExclusive(lockFD, lock)
        let current = try readRecord(user)
        var exists = current != nil
        return try body(current) { (next: UserRecord?) throws(StoreError) in
            if let next {
                guard next.user == user else { throw StoreError.invalidValue("record user does not match \(user)") }
                try write(next)
                exists = true
            } else if exists {
                Posix.unlink(recordPath(user))
                try syncDirectory(usersDirectory)
                exists = false
            }
        }
    }

    /// The temporary file a write of `user`'s record goes through. One name per user:
    /// only the holder of the user's lock writes it, so a writer killed half-way leaves
    /// at most this one file, which the next write replaces.
    func tempPath(_ user: UserName) -> String { usersDirectory + "/." + user.value + ".tmp" }

    /// Temp file → fsync → rename → fsync the directory.
    func write(_ record: UserRecord) throws(StoreError) {
        let path = recordPath(record.user)
        let temp = tempPath(record.user)
        var bytes = Array(RecordFormat.serialise(record).utf8)
        defer { ConstantTime.wipe(&bytes) }
        Posix.unlink(temp)
        let fd = try Posix.open(temp, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        do {
            // Root's group, whatever group the writing process has (a setuid helper keeps
            // the caller's), and mode 0600 whatever the umask.
            try Posix.ownAndProtect(fd, uid: owner, temp)
            try Posix.writeAll(fd, bytes, temp)
            try Posix.fsync(fd, temp)
            Posix.close(fd)
            try Posix.rename(temp, path)
        } catch {
            Posix.close(fd)
            Posix.unlink(temp)
            throw error
        }
        try syncDirectory(usersDirectory)
    }

    func syncDirectory(_ path: String) throws(StoreError) {
        let fd = try Posix.open(path, O_RDONLY | O_DIRECTORY)
        defer { Posix.close(fd) }
        try Posix.fsync(fd, path)
    }

    /// Users with a record, sorted. Temporary files and names that fail validation are skipped.
    public func list() throws(StoreError) -> [UserName] {
        try checkDirectory(root)
        guard try Posix.lstatIfExists(usersDirectory) != nil else { return [] }
        try checkDirectory(usersDirectory)
        return try Posix.listDirectory(usersDirectory).compactMap { try? UserName($0) }.sorted()
    }
}
