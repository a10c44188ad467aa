#if canImport(Glibc)
import Glibc
#endif

/// The hash functions an OATH credential may use (RFC 4226, RFC 6238 §1.2), with the
/// numbers YKOATH gives them in the low nibble of a credential's type byte.
public enum HashAlgorithm: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case sha1 = 0x01
    case sha256 = 0x02
    case sha512 = 0x03

    /// Output length of the HMAC in bytes.
    public var digestLength: Int {
        switch self {
        case .sha1: return SHA1.digestSize
        case .sha256: return SHA256.digestSize
        case .sha512: return SHA512.digestSize
        }
    }

    /// The block size of the hash; HMAC keys longer than this are hashed first (RFC 2104 §2).
    public var blockSize: Int { self == .sha512 ? SHA512.blockSize : SHA1.blockSize }

    /// Lower-case name as used in records and on the command line: `sha1`, `sha256`, `sha512`.
    public var description: String {
        switch self {
        case .sha1: return "sha1"
        case .sha256: return "sha256"
        case .sha512: return "sha512"
        }
    }

    /// Parses `sha1`, `SHA1`, `sha-256`, … as written in records, otpauth URIs and options.
    public init?(name: String) {
        var folded = ""
        for ch in name.lowercased() where ch != "-" { folded.append(ch) }
        switch folded {
        case "sha1": self = .sha1
        case "sha256": self = .sha256
        case "sha512": self = .sha512
        default: return nil
        }
    }
}

/// A running hash of any of the three algorithms.
enum HashState {
    case sha1(SHA1)
    case sha256(SHA256)
    case sha512(SHA512)

    init(_ algorithm: HashAlgorithm) {
        switch algorithm {
        case .sha1: self = .sha1(SHA1())
        case .sha256: self = .sha256(SHA256())
        case .sha512: self = .sha512(SHA512())
        }
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        switch self {
        case .sha1(var h): h.update(bytes); self = .sha1(h)
        case .sha256(var h): h.update(bytes); self = .sha256(h)
        case .sha512(var h): h.update(bytes); self = .sha512(h)
        }
    }

    mutating func finalize() -> [UInt8] {
        switch self {
        case .sha1(var h): return h.finalize()
        case .sha256(var h): return h.finalize()
        case .sha512(var h): return h.finalize()
        }
    }
}

/// Plain message digests (SHA-1/256/512).
public enum Digest {
    public static func hash(_ algorithm: HashAlgorithm, _ data: [UInt8]) -> [UInt8] {
        var h = HashState(algorithm)
        data.withUnsafeBytes { h.update($0) }
        return h.finalize()
    }
}

/// An HMAC key with the inner and outer pads already absorbed (RFC 2104 §2), so that each
/// message costs only its own blocks: a HOTP window of 1000 counters pays for the key once.
public struct HMACKey {
    public let algorithm: HashAlgorithm
    private var inner: HashState
    private var outer: HashState

    public init(_ algorithm: HashAlgorithm, key: UnsafeRawBufferPointer) {
        self.algorithm = algorithm
        var block = [UInt8](repeating: 0, count: algorithm.blockSize)
        if key.count > algorithm.blockSize {
            var long = HashState(algorithm)
            long.update(key)
            let digest = long.finalize()
            block.replaceSubrange(0..<digest.count, with: digest)
        } else if let base = key.baseAddress {
            block.withUnsafeMutableBytes { $0.baseAddress?.copyMemory(from: base, byteCount: key.count) }
        }
        var ipad = block.map { $0 ^ 0x36 }
        var opad = block.map { $0 ^ 0x5C }
        inner = HashState(algorithm)
        outer = HashState(algorithm)
        ipad.withUnsafeBytes { inner.update($0) }
        opad.withUnsafeBytes { outer.update($0) }
        explicit_bzero(&block, block.count)
        explicit_bzero(&ipad, ipad.count)
        explicit_bzero(&opad, opad.count)
    }

    public init(_ algorithm: HashAlgorithm, key: SecretBytes) {
        self = key.withUnsafeBytes { HMACKey(algorithm, key: $0) }
    }

    /// HMAC(key, message).
    public func authenticate(_ message: UnsafeRawBufferPointer) -> [UInt8] {
        var i = inner
        i.update(message)
        let innerDigest = i.finalize()
        var o = outer
        innerDigest.withUnsafeBytes { o.update($0) }
        return o.finalize()
    }

    public func authenticate(_ message: [UInt8]) -> [UInt8] { message.withUnsafeBytes { authenticate($0) } }
}

/// HMAC (RFC 2104) in one call.
public enum HMAC {
    public static func authenticate(_ algorithm: HashAlgorithm, key: UnsafeRawBufferPointer, message: UnsafeRawBufferPointer) -> [UInt8] {
        HMACKey(algorithm, key: key).authenticate(message)
    }

    public static func authenticate(_ algorithm: HashAlgorithm, key: [UInt8], message: [UInt8]) -> [UInt8] {
        key.withUnsafeBytes { k in message.withUnsafeBytes { m in authenticate(algorithm, key: k, message: m) } }
    }

    public static func authenticate(_ algorithm: HashAlgorithm, key: SecretBytes, message: [UInt8]) -> [UInt8] {
        key.withUnsafeBytes { k in message.withUnsafeBytes { m in authenticate(algorithm, key: k, message: m) } }
    }
}

/// PBKDF2 (RFC 8018 §5.2) with HMAC-SHA1, as YKOATH derives an access key from a password.
public enum PBKDF2 {
    public static func sha1(password: [UInt8], salt: [UInt8], iterations: Int, length: Int) -> [UInt8]? {
        guard iterations > 0, iterations <= 10_000_000, length > 0, length <= 1024 else { return nil }
        let prf = password.withUnsafeBytes { HMACKey(.sha1, key: $0) }
        var out: [UInt8] = []
        var blockIndex: UInt32 = 1
        while out.count < length {
            var u = prf.authenticate(salt + [UInt8(blockIndex >> 24), UInt8((blockIndex >> 16) & 0xFF),
                                             UInt8((blockIndex >> 8) & 0xFF), UInt8(blockIndex & 0xFF)])
            var t = u
            for _ in 1..<iterations {
                u = prf.authenticate(u)
                for j in t.indices { t[j] ^= u[j] }
            }
            out += t
            blockIndex &+= 1
        }
        return Array(out.prefix(length))
    }
}

/// The kernel's CSPRNG, through glibc's arc4random_buf (getrandom(2) underneath, no
/// file descriptor, nothing to initialise).
public enum SecureRandom {
    /// `count` random bytes (nil only for an absurd count).
    public static func bytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, count <= 1 << 20 else { return nil }
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { if let base = $0.baseAddress { arc4random_buf(base, $0.count) } }
        return out
    }
}
