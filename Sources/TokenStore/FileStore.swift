import OTPCore
import POSIX

/// Runs a system call wrapper, turning its error into the store's.
@inline(__always)
func io<T>(_ body: @autoclosure () throws(SystemCallError) -> T) throws(StoreError) -> T {
    do { return try body() } catch {
        if error.errno == Errno.loop { throw .insecure(path: error.path, reason: "it is a symbolic link") }
        throw .io(path: error.path, operation: error.call, errno: error.errno)
    }
}

/// The per-user records a `LoginFlow` reads and updates.
///
/// `update` is the only way to change a record: it holds that user's lock while it
/// reads, lets the caller change the record, and writes it back atomically, so two
/// logins of one user serialise and logins of different users never wait on each other.
public protocol Store {
    /// The user's record, or nil when the user has none.
    func read(_ user: UserName) throws(StoreError) -> UserRecord?
    /// Holds the user's lock while `body` runs. `body` gets the record as it is (nil: none)
    /// and `commit`, which writes a new state durably before it returns (nil removes the
    /// record). `commit` may be called more than once, all under the one lock: a login
    /// counts its attempt first, then decides, then clears the count on success.
    func withLock<R>(_ user: UserName,
                     _ body: (UserRecord?, _ commit: (UserRecord?) throws(StoreError) -> Void) throws(StoreError) -> R) throws(StoreError) -> R
}

/// What a locked update does to the record.
public enum RecordChange: Sendable {
    /// Leave it as it is: nothing is written.
    case keep
    /// Write this record (atomically, durably).
    case write(UserRecord)
    /// Remove the record.
    case remove
}

extension Store {
    /// Locked read-modify-write. `body` gets the current record (nil: none) and returns its
    /// result and the change to make. Nothing is written when `body` throws or keeps.
    public func update<R>(_ user: UserName, _ body: (UserRecord?) throws(StoreError) -> (R, RecordChange)) throws(StoreError) -> R {
        try withLock(user) { (current: UserRecord?, commit: (UserRecord?) throws(StoreError) -> Void) throws(StoreError) -> R in
            let (result, change) = try body(current)
            switch change {
            case .keep: break
            case .write(let record): try commit(record)
            case .remove: try commit(nil)
            }
            return result
        }
    }

    /// `update` without a result.
    public func update(_ user: UserName, _ body: (UserRecord?) throws(StoreError) -> RecordChange) throws(StoreError) {
        try update(user) { (current: UserRecord?) throws(StoreError) -> ((), RecordChange) in ((), try body(current)) }
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
    /// The bytes and parse of the record read last. A login reads its record twice (the
    /// summary, then under the lock); when the bytes under the lock are the very same, the
    /// parse is reused. Equal bytes, not an inode or a time, decide: nothing else is safe
    /// against a record rewritten in between. Wiped when replaced and on deinit. What it
    /// saves a login is in Benchmarks/RESULTS.md.
    private var lastRead: (user: UserName, bytes: [UInt8], record: UserRecord)?

    deinit { forgetLastRead() }

    private func forgetLastRead() {
        guard var old = lastRead?.bytes else { return }
        lastRead = nil
        ConstantTime.wipe(&old)  // now the only reference: wiped in place
    }
    public static let defaultRoot = "/var/lib/smartotp"

    /// - Parameters:
    ///   - root: the store directory (`/var/lib/smartotp` unless `store=` says otherwise).
    ///   - owner: the uid that must own everything; root, except in tests run unprivileged.
    public init(root: String = FileStore.defaultRoot, owner: UInt32 = 0) {
        var r = root
        while r.utf8.count > 1 && r.utf8.last == UInt8(ascii: "/") { r = String(decoding: r.utf8.dropLast(), as: UTF8.self) }
        self.root = r
        self.owner = owner
        usersDirectory = Self.path(r, "/users", "")
        locksDirectory = Self.path(r, "/locks", "")
    }

    let usersDirectory: String
    let locksDirectory: String
    /// The record's path, made once for the login's user (the summary reads it, the locked
    /// update reads and writes it).
    func recordPath(_ user: UserName) -> String {
        if let known = lastPath, known.user == user { return known.path }
        let path = Self.path(usersDirectory, "/", user.value)
        lastPath = (user, path)
        return path
    }
    private var lastPath: (user: UserName, path: String)?
    func lockPath(_ user: UserName) -> String { Self.path(locksDirectory, "/", user.value) }
    /// The temporary file a write of `user`'s record goes through. One name per user:
    /// only the holder of the user's lock writes it, so a writer killed half-way leaves
    /// at most this one file, which the next write replaces.
    func tempPath(_ user: UserName) -> String { Self.path(usersDirectory, "/.", user.value, ".tmp") }

    /// `directory`, `separator`, `name`, `suffix` as one String, made in one allocation
    /// (each `+` allocates; a login makes nine of these paths).
    static func path(_ directory: String, _ separator: StaticString, _ name: String, _ suffix: StaticString = "") -> String {
        var directory = directory, name = name
        let count = directory.utf8.count + separator.utf8CodeUnitCount + name.utf8.count + suffix.utf8CodeUnitCount
        return String(unsafeUninitializedCapacity: count) { out in
            var i = 0
            func put(_ bytes: UnsafeBufferPointer<UInt8>) {
                for b in bytes where i < out.count { out[i] = b; i += 1 }
            }
            directory.withUTF8(put)
            separator.withUTF8Buffer(put)
            name.withUTF8(put)
            suffix.withUTF8Buffer(put)
            return i
        }
    }

    /// Creates `root` (0700) if missing, then `users` and `locks`; checks all three.
    public func prepare() throws(StoreError) {
        for dir in [root, usersDirectory, locksDirectory] { try checkDirectory(dir, creating: true) }
    }

    /// Refuses a directory that is missing (made first, 0700, when `creating`), a symlink,
    /// not owned by `owner`, or open to group/others.
    func checkDirectory(_ path: String, creating: Bool = false) throws(StoreError) {
        var status = try io(try FileSystem.linkStatus(path))
        if status == nil && creating {
            try io(try FileSystem.makeDirectory(path))
            status = try io(try FileSystem.linkStatus(path))
        }
        guard let st = status else { throw .missing(path: path) }
        if st.isSymbolicLink { throw .insecure(path: path, reason: "it is a symbolic link; use the real directory") }
        guard st.isDirectory else { throw .insecure(path: path, reason: "not a directory") }
        try checkOwnership(st, path, mode: "700")
    }

    /// `mode` is the one the fix names; the message is built only when it is needed (this
    /// runs five times a login).
    func checkOwnership(_ st: FileStatus, _ path: String, mode: StaticString) throws(StoreError) {
        func fix() -> String { msg("chown \(owner) \(path) && chmod \(mode) \(path)") }
        if st.owner != owner {
            throw .insecure(path: path, reason: msg("owned by uid \(st.owner), not \(owner) (fix: \(fix()))"))
        }
        if st.permissions & 0o077 != 0 {
            throw .insecure(path: path, reason: msg("mode \(String(st.permissions, radix: 8)) lets group or others in (fix: \(fix()))"))
        }
    }

    /// A missing store is an error, never "nobody is enrolled": a typo in `store=` or an
    /// unmounted filesystem must not let everyone through `nullok`.
    public func read(_ user: UserName) throws(StoreError) -> UserRecord? {
        try checkDirectory(root)
        try checkDirectory(usersDirectory)
        return try readRecord(user)
    }

    func readRecord(_ user: UserName, path: String? = nil) throws(StoreError) -> UserRecord? {
        let path = path ?? recordPath(user)
        guard let fd = try io(try FileDescriptor.openIfExists(path, .readOnly)) else { return nil }
        defer { fd.close() }
        let st = try io(try fd.status(path))
        guard st.isRegular else { throw .insecure(path: path, reason: "not a regular file") }
        try checkOwnership(st, path, mode: "600")
        guard st.size <= Int64(RecordFormat.maxSize),
              var bytes = try io(try fd.readAll(path, limit: RecordFormat.maxSize)) else {
            throw .tooLarge(path: path)
        }
        defer { ConstantTime.wipe(&bytes) }
        if let cached = lastRead, cached.user == user, ConstantTime.equals(cached.bytes, bytes) { return cached.record }
        // Records are ASCII (labels are percent-encoded): checked byte by byte, with no
        // String made; anything else must at least be UTF-8.
        guard bytes.allSatisfy({ $0 < 0x80 }) || String(validating: bytes, as: UTF8.self) != nil else {
            throw .malformed(path: path, line: 1, reason: "not UTF-8 text")
        }
        let record = try RecordFormat.parse(bytes: bytes, path: path)
        guard record.user == user else {
            throw .malformed(path: path, line: 1, reason: msg("record is for user '\(record.user)', not '\(user)'"))
        }
        forgetLastRead()
        lastRead = (user, bytes, record)
        // The cache holds the one reference now (wiped when replaced): wiping `bytes` on the
        // way out would first copy them.
        bytes = []
        return record
    }

    /// The store must exist (the admin tools create it with `prepare`); only the lock
    /// directory, inside a checked root, is made when missing.
    public func withLock<R>(_ user: UserName,
                            _ body: (UserRecord?, _ commit: (UserRecord?) throws(StoreError) -> Void) throws(StoreError) -> R) throws(StoreError) -> R {
        try checkDirectory(root)
        try checkDirectory(usersDirectory)
        try checkDirectory(locksDirectory, creating: true)
        let lock = lockPath(user)
        let lockFD = try io(try FileDescriptor.open(lock, [.readWrite, .create]))
        defer { lockFD.close() }  // closing releases the flock
        try io(try lockFD.lockExclusive(lock))
        let path = recordPath(user)
        let temp = tempPath(user)  // made once: a login writes twice
        let current = try readRecord(user, path: path)
        var exists = current != nil
        return try body(current) { (next: UserRecord?) throws(StoreError) in
            if let next {
                guard next.user == user else { throw StoreError.invalidValue(msg("record user does not match \(user)")) }
                try write(next, path: path, temp: temp)
                exists = true
            } else if exists {
                FileSystem.unlink(path)
                try io(try FileSystem.syncDirectory(usersDirectory))
                exists = false
            }
        }
    }

    /// Temp file → fsync → rename → fsync the directory.
    func write(_ record: UserRecord, path: String, temp: String) throws(StoreError) {
        var bytes = RecordFormat.encode(record)
        defer { ConstantTime.wipe(&bytes) }
        FileSystem.unlink(temp)
        let fd = try io(try FileDescriptor.open(temp, [.writeOnly, .create, .exclusive]))
        do {
            // Root's group, whatever group the writing process has (a setuid helper keeps
            // the caller's), and mode 0600 whatever the umask.
            try io(try fd.ownAndProtect(uid: owner, mode: 0o600, temp))
            try io(try fd.writeAll(bytes, temp))
            try io(try fd.sync(temp))
            fd.close()
            try io(try FileSystem.rename(temp, to: path))
        } catch {
            fd.close()
            FileSystem.unlink(temp)
            throw error
        }
        try io(try FileSystem.syncDirectory(usersDirectory))
    }

    /// Users with a record, sorted. Temporary files and names that fail validation are skipped.
    public func list() throws(StoreError) -> [UserName] {
        try checkDirectory(root)
        try checkDirectory(usersDirectory)
        return try io(try FileSystem.list(usersDirectory)).compactMap { try? UserName($0) }.sorted()
    }
}
