internal import CPOSIX
import OTPCore

/// What `lstat(2)` / `fstat(2)` say of a file, as far as the callers need it.
public struct FileStatus: Sendable, Equatable {
    public var mode: UInt32
    public var owner: UInt32
    public var group: UInt32
    public var size: Int64
    public var inode: UInt64
    /// The last change of its contents, in nanoseconds since 1970.
    public var modified: Int64

    init(_ st: stat) {
        mode = UInt32(st.st_mode)
        owner = st.st_uid
        group = st.st_gid
        size = Int64(st.st_size)
        inode = UInt64(st.st_ino)
        modified = Int64(st.st_mtim.tv_sec) &* 1_000_000_000 &+ Int64(st.st_mtim.tv_nsec)
    }

    public var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
    public var isRegular: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
    public var isSymbolicLink: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFLNK) }
    /// The permission bits (0o777).
    public var permissions: UInt32 { mode & 0o777 }
}

/// `count` zero bytes, cleared by memset(3): `[UInt8](repeating: 0, count:)` is a loop in
/// Embedded Swift, a byte an iteration.
func zeroedBytes(_ count: Int) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        if let base = buffer.baseAddress { memset(base, 0, count) }
        initialized = count
    }
}

/// Flags of `open(2)`, by their C names.
public struct OpenFlags: OptionSet, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let readOnly = OpenFlags(rawValue: O_RDONLY)
    public static let writeOnly = OpenFlags(rawValue: O_WRONLY)
    public static let readWrite = OpenFlags(rawValue: O_RDWR)
    public static let create = OpenFlags(rawValue: O_CREAT)
    public static let exclusive = OpenFlags(rawValue: O_EXCL)
    public static let directory = OpenFlags(rawValue: O_DIRECTORY)
}

/// An open file descriptor. Not closed on deinit: the owner closes it (`defer`), so that
/// a copy never closes a descriptor another copy still uses.
public struct FileDescriptor: Sendable {
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }

    // Paths reach C through `withCString`, which hands over a native String's own bytes;
    // passing a String where C wants a pointer copies it into a new array a byte at a time
    // in Embedded Swift (Benchmarks/RESULTS.md has the cost).

    /// `open(2)` with O_CLOEXEC and O_NOFOLLOW added: a symbolic link is never followed
    /// (ELOOP), and no child of the host inherits the descriptor.
    public static func open(_ path: String, _ flags: OpenFlags, mode: UInt32 = 0o600) throws(SystemCallError) -> FileDescriptor {
        let fd = path.withCString { p in retryingOnInterrupt { cposix_open(p, flags.rawValue | O_CLOEXEC | O_NOFOLLOW, mode_t(mode)) } }
        guard fd >= 0 else { throw .last("open", path) }
        return FileDescriptor(rawValue: fd)
    }

    /// `open(2)` that returns nil when the file does not exist.
    public static func openIfExists(_ path: String, _ flags: OpenFlags) throws(SystemCallError) -> FileDescriptor? {
        do { return try open(path, flags) } catch where error.errno == ENOENT { return nil }
    }

    /// `close(2)`.
    public func close() { _ = CPOSIX.close(rawValue) }

    /// `fstat(2)`.
    public func status(_ path: String) throws(SystemCallError) -> FileStatus {
        var st = stat()
        guard fstat(rawValue, &st) == 0 else { throw .last("fstat", path) }
        return FileStatus(st)
    }

    /// Reads to the end, at most `limit` bytes; nil when there is more. Straight into the
    /// result, zero-filled and sized by fstat with one byte more (so that a file that grew
    /// shows): no copy of what was read is left behind (records hold secrets), and no
    /// byte-by-byte append (which Embedded Swift compiles to a loop). A file that grew
    /// meanwhile moves to a larger buffer, and the smaller one is wiped.
    public func readAll(_ path: String, limit: Int) throws(SystemCallError) -> [UInt8]? {
        var st = stat()
        let expected = fstat(rawValue, &st) == 0 && st.st_size > 0 ? min(Int(st.st_size), limit) : 0
        var out = zeroedBytes(expected + 1)
        var filled = 0
        while true {
            if filled == out.count {
                guard out.count <= limit else {
                    ConstantTime.wipe(&out)
                    return nil
                }
                var larger = zeroedBytes(min(out.count * 2, limit + 1))
                larger.withUnsafeMutableBytes { dst in
                    out.withUnsafeBytes { src in if let d = dst.baseAddress, let s = src.baseAddress { d.copyMemory(from: s, byteCount: src.count) } }
                }
                ConstantTime.wipe(&out)
                out = larger
            }
            let n = out.withUnsafeMutableBytes { b in
                retryingOnInterrupt { read(rawValue, b.baseAddress.map { $0 + filled }, b.count - filled) }
            }
            if n < 0 {
                let error = SystemCallError.last("read", path)
                ConstantTime.wipe(&out)
                throw error
            }
            if n == 0 { break }
            filled += n
        }
        out.removeLast(out.count - filled)
        return out
    }

    /// Writes all of `bytes`, looping over short writes.
    public func writeAll(_ bytes: [UInt8], _ path: String) throws(SystemCallError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { b in
                retryingOnInterrupt { write(rawValue, b.baseAddress.map { $0 + offset }, b.count - offset) }
            }
            if n <= 0 { throw .last("write", path) }
            offset += n
        }
    }

    /// `fsync(2)`.
    public func sync(_ path: String) throws(SystemCallError) {
        guard retryingOnInterrupt({ fsync(rawValue) }) == 0 else { throw .last("fsync", path) }
    }

    /// `flock(2)` exclusive, waiting.
    public func lockExclusive(_ path: String) throws(SystemCallError) {
        guard retryingOnInterrupt({ flock(rawValue, LOCK_EX) }) == 0 else { throw .last("flock", path) }
    }

    /// `fchown(2)` to `uid` and group 0 when running as root (anyone else cannot give a
    /// file away, and owns what it creates), then `fchmod(2)` to `mode`.
    public func ownAndProtect(uid: UInt32, mode: UInt32, _ path: String) throws(SystemCallError) {
        if geteuid() == 0 { guard fchown(rawValue, uid, 0) == 0 else { throw .last("fchown", path) } }
        guard fchmod(rawValue, mode_t(mode)) == 0 else { throw .last("fchmod", path) }
    }
}

/// Calls on paths.
public enum FileSystem {
    /// The whole of a file, at most `limit` bytes; nil when it is larger. Throws when it
    /// cannot be opened or read (ENOENT included). A symbolic link is followed only when
    /// `followingLinks` (a server's certificates, which certbot and others link).
    public static func read(_ path: String, limit: Int, followingLinks: Bool = false) throws(SystemCallError) -> [UInt8]? {
        let fd: FileDescriptor
        if followingLinks {
            let raw = path.withCString { p in retryingOnInterrupt { cposix_open(p, O_RDONLY | O_CLOEXEC, 0) } }
            guard raw >= 0 else { throw .last("open", path) }
            fd = FileDescriptor(rawValue: raw)
        } else {
            fd = try FileDescriptor.open(path, .readOnly)
        }
        defer { fd.close() }
        return try fd.readAll(path, limit: limit)
    }

    /// `lstat(2)`; nil when the path does not exist.
    public static func linkStatus(_ path: String) throws(SystemCallError) -> FileStatus? {
        var st = stat()
        if path.withCString({ lstat($0, &st) }) == 0 { return FileStatus(st) }
        if cposix_errno() == ENOENT { return nil }
        throw .last("lstat", path)
    }

    /// `mkdir(2)`; an existing entry is left for the caller to check.
    public static func makeDirectory(_ path: String, mode: UInt32 = 0o700) throws(SystemCallError) {
        if path.withCString({ cposix_mkdir($0, mode_t(mode)) }) != 0 && cposix_errno() != EEXIST { throw .last("mkdir", path) }
    }

    /// `rename(2)`: atomic replacement within one directory.
    public static func rename(_ from: String, to: String) throws(SystemCallError) {
        guard from.withCString({ f in to.withCString { t in CPOSIX.rename(f, t) } }) == 0 else { throw .last("rename", to) }
    }

    /// `unlink(2)`; a missing file is not an error.
    public static func unlink(_ path: String) { _ = path.withCString { CPOSIX.unlink($0) } }

    /// Names in a directory, without `.` and `..`; empty when it does not exist.
    public static func list(_ path: String) throws(SystemCallError) -> [String] {
        guard let dir = path.withCString({ opendir($0) }) else {
            if cposix_errno() == ENOENT { return [] }
            throw .last("opendir", path)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            guard let raw = cposix_dirent_name(entry) else { continue }
            let name = String(cString: raw)
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// `fsync(2)` of a directory, so that a rename in it survives a crash.
    public static func syncDirectory(_ path: String) throws(SystemCallError) {
        let fd = try FileDescriptor.open(path, [.readOnly, .directory])
        defer { fd.close() }
        try fd.sync(path)
    }
}
