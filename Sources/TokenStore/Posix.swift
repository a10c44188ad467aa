#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The only file in TokenStore that calls libc. Each helper names the call it wraps,
/// retries EINTR, and turns a failure into a `StoreError.io` naming the path.
enum Posix {
    static func describe(errno e: Int32) -> String {
        guard let s = strerror(e) else { return "error \(e)" }
        return String(cString: s)
    }

    /// Runs `body` until it does not fail with EINTR.
    @inline(__always)
    static func retrying<T: BinaryInteger>(_ body: () -> T) -> T {
        while true {
            let r = body()
            if r == -1 && errno == EINTR { continue }
            return r
        }
    }

    static func fail(_ path: String, _ op: String) -> StoreError { .io(path: path, operation: op, errno: errno) }

    /// `lstat(2)`; nil when the path does not exist.
    static func lstatIfExists(_ path: String) throws(StoreError) -> stat? {
        var st = stat()
        if lstat(path, &st) == 0 { return st }
        if errno == ENOENT { return nil }
        throw fail(path, "lstat")
    }

    static func isDirectory(_ st: stat) -> Bool { (st.st_mode & S_IFMT) == S_IFDIR }
    static func isRegular(_ st: stat) -> Bool { (st.st_mode & S_IFMT) == S_IFREG }
    static func isSymlink(_ st: stat) -> Bool { (st.st_mode & S_IFMT) == S_IFLNK }

    /// `mkdir(2)` with mode 0700; an existing entry is left for the caller to check.
    static func makeDirectory(_ path: String) throws(StoreError) {
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw fail(path, "mkdir") }
    }

    /// `open(2)` with O_CLOEXEC|O_NOFOLLOW added: a symlink is never followed.
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o600) throws(StoreError) -> Int32 {
        let fd = retrying { Glibc.open(path, flags | O_CLOEXEC | O_NOFOLLOW, mode) }
        if fd < 0 {
            if errno == ELOOP { throw .insecure(path: path, reason: "it is a symbolic link") }
            throw fail(path, "open")
        }
        return fd
    }

    /// `open(2)` that returns nil when the file does not exist.
    static func openIfExists(_ path: String, _ flags: Int32) throws(StoreError) -> Int32? {
        let fd = retrying { Glibc.open(path, flags | O_CLOEXEC | O_NOFOLLOW) }
        if fd >= 0 { return fd }
        if errno == ENOENT { return nil }
        if errno == ELOOP { throw .insecure(path: path, reason: "it is a symbolic link") }
        throw fail(path, "open")
    }

    static func fstat(_ fd: Int32, _ path: String) throws(StoreError) -> stat {
        var st = stat()
        guard Glibc.fstat(fd, &st) == 0 else { throw fail(path, "fstat") }
        return st
    }

    /// Reads the whole file (at most `limit` bytes; more is an error).
    static func readAll(_ fd: Int32, _ path: String, limit: Int) throws(StoreError) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = chunk.withUnsafeMutableBytes { b in retrying { read(fd, b.baseAddress, b.count) } }
            if n < 0 { throw fail(path, "read") }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
            if out.count > limit { throw .tooLarge(path: path) }
        }
    }

    /// Writes all of `bytes`, looping over short writes.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], _ path: String) throws(StoreError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { b in
                retrying { write(fd, b.baseAddress.map { $0 + offset }, b.count - offset) }
            }
            if n <= 0 { throw fail(path, "write") }
            offset += n
        }
    }

    static func fsync(_ fd: Int32, _ path: String) throws(StoreError) {
        guard retrying({ Glibc.fsync(fd) }) == 0 else { throw fail(path, "fsync") }
    }

    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// `rename(2)`: atomic replacement within one directory.
    static func rename(_ from: String, _ to: String) throws(StoreError) {
        guard Glibc.rename(from, to) == 0 else { throw fail(to, "rename") }
    }

    static func unlink(_ path: String) { _ = Glibc.unlink(path) }

    /// `flock(2)` exclusive, waiting.
    static func lockExclusive(_ fd: Int32, _ path: String) throws(StoreError) {
        guard retrying({ flock(fd, LOCK_EX) }) == 0 else { throw fail(path, "flock") }
    }

    /// Directory entries' names (without . and ..).
    static func listDirectory(_ path: String) throws(StoreError) -> [String] {
        guard let dir = opendir(path) else {
            if errno == ENOENT { return [] }
            throw fail(path, "opendir")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// `mktime(3)`: a local date and time as Unix time; nil when it cannot be represented.
    static func localTime(_ year: Int, _ month: Int, _ day: Int, _ hour: Int, _ minute: Int, _ second: Int) -> Int64? {
        var t = tm()
        t.tm_year = Int32(year - 1900)
        t.tm_mon = Int32(month - 1)
        t.tm_mday = Int32(day)
        t.tm_hour = Int32(hour)
        t.tm_min = Int32(minute)
        t.tm_sec = Int32(second)
        t.tm_isdst = -1
        let r = mktime(&t)
        return r == -1 ? nil : Int64(r)
    }

    /// `fchown(2)` to `uid` and group 0 (only when running as root: anyone else cannot
    /// give a file away, and owns what it creates), then `fchmod(2)` 0600.
    static func ownAndProtect(_ fd: Int32, uid: uid_t, _ path: String) throws(StoreError) {
        if geteuid() == 0 { guard fchown(fd, uid, 0) == 0 else { throw fail(path, "fchown") } }
        guard fchmod(fd, 0o600) == 0 else { throw fail(path, "fchmod") }
    }
}
