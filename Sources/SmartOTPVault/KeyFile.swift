import Crypto
import Glibc

/// A 32-byte key that lives outside the database: a file of random bytes that only its
/// owner may read (handed to the unit as a systemd credential, normally). smartotpd keeps
/// two: `seal_key` (token secrets and card access keys) and `audit_key` (the audit chain).
public struct KeyFile: Sendable {
    public let path: String
    /// The key's id: the first 8 bytes of SHA-256 over a label and the key, in hex. It is
    /// written beside every sealed value, so the key that opens it is found by id (and a
    /// rekey knows which rows are done); it says nothing about the key.
    public let id: String
    /// The key's bytes, and the key made of them once (every verdict opens a seal with it).
    let bytes: [UInt8]
    let key: SymmetricKey

    public static let size = 32

    public struct Refusal: Error, CustomStringConvertible, Equatable {
        public let description: String
        init(_ d: String) { description = d }
    }

    /// Reads the key. Refused: a missing file, one that is not a regular file, one that
    /// others (group or world) may read or write, one of another size than 32 bytes.
    public init(path: String) throws(Refusal) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw Refusal("cannot open the key \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw Refusal("the key \(path) is not a regular file") }
        guard st.st_mode & 0o077 == 0 else {
            throw Refusal("the key \(path) can be read or written by others (mode \(String(st.st_mode & 0o777, radix: 8))): chmod 0400 it (0600 at most)")
        }
        guard st.st_size == Self.size else { throw Refusal("the key \(path) must hold exactly 32 bytes (it holds \(st.st_size)); make one with smartotpd keygen") }
        var bytes = [UInt8](repeating: 0, count: Self.size)
        defer { for i in bytes.indices { bytes[i] = 0 } }
        guard read(fd, &bytes, Self.size) == Self.size else { throw Refusal("cannot read the key \(path)") }
        self.init(path: path, bytes: bytes)
    }

    /// A key from its bytes (tests, keygen).
    public init(path: String = "", bytes: [UInt8]) {
        self.path = path
        self.bytes = bytes
        key = SymmetricKey(data: bytes)
        var label = Array("smartotp key id 1".utf8)
        label += bytes
        id = SHA256.hash(data: label).prefix(8).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        for i in label.indices { label[i] = 0 }
    }

    /// Writes 32 new random bytes to `path` (0400, created; an existing file is never
    /// replaced: that would orphan every value sealed under it).
    public static func generate(at path: String) throws(Refusal) -> KeyFile {
        var bytes = [UInt8](repeating: 0, count: size)
        defer { for i in bytes.indices { bytes[i] = 0 } }
        var generator = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = generator.next() }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o400)
        guard fd >= 0 else { throw Refusal("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard write(fd, bytes, size) == size, fsync(fd) == 0 else {
            unlink(path)
            throw Refusal("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        return KeyFile(path: path, bytes: bytes)
    }
}
