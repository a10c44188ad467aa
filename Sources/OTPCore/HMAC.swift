import CLibCrypto

/// The hash functions an OATH credential may use (RFC 4226, RFC 6238 §1.2), with the
/// numbers YKOATH gives them in the low nibble of a credential's type byte.
public enum HashAlgorithm: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case sha1 = 0x01
    case sha256 = 0x02
    case sha512 = 0x03

    /// Output length of the HMAC in bytes.
    public var digestLength: Int {
        switch self {
        case .sha1: return 20
        case .sha256: return 32
        case .sha512: return 64
        }
    }

    /// The block size of the hash; HMAC keys longer than this are hashed first (RFC 2104 §2).
    public var blockSize: Int { self == .sha512 ? 128 : 64 }

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

    fileprivate var evp: OpaquePointer? {
        switch self {
        case .sha1: return EVP_sha1()
        case .sha256: return EVP_sha256()
        case .sha512: return EVP_sha512()
        }
    }
}

/// HMAC (RFC 2104) over libcrypto's one-shot `HMAC()`.
public enum HMAC {
    /// Computes HMAC(key, message). Returns `nil` only if libcrypto fails, which it
    /// does not for these digests; callers treat `nil` as a failed check.
    public static func authenticate(
        _ algorithm: HashAlgorithm, key: UnsafeRawBufferPointer, message: UnsafeRawBufferPointer
    ) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var outLength: UInt32 = 0
        // libcrypto wants a non-NULL pointer even for an empty key or message.
        var zero: UInt8 = 0
        let result: UnsafeMutablePointer<UInt8>? = withUnsafeMutablePointer(to: &zero) { zp in
            out.withUnsafeMutableBufferPointer { o in
                CLibCrypto.HMAC(
                    algorithm.evp,
                    key.baseAddress ?? UnsafeRawPointer(zp), Int32(clamping: key.count),
                    message.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(zp),
                    message.count,
                    o.baseAddress, &outLength)
            }
        }
        guard result != nil, Int(outLength) == algorithm.digestLength else { return nil }
        return Array(out.prefix(Int(outLength)))
    }

    /// Convenience over byte arrays.
    public static func authenticate(_ algorithm: HashAlgorithm, key: [UInt8], message: [UInt8]) -> [UInt8]? {
        key.withUnsafeBytes { k in message.withUnsafeBytes { m in authenticate(algorithm, key: k, message: m) } }
    }

    /// Convenience for a key held in a `SecretBytes`.
    public static func authenticate(_ algorithm: HashAlgorithm, key: SecretBytes, message: [UInt8]) -> [UInt8]? {
        key.withUnsafeBytes { k in message.withUnsafeBytes { m in authenticate(algorithm, key: k, message: m) } }
    }
}

/// PBKDF2 (RFC 8018 §5.2) with HMAC-SHA1, as YKOATH derives an access key from a password.
public enum PBKDF2 {
    public static func sha1(password: [UInt8], salt: [UInt8], iterations: Int, length: Int) -> [UInt8]? {
        guard iterations > 0, length > 0, length <= 1024 else { return nil }
        var out = [UInt8](repeating: 0, count: length)
        let ok: Int32 = password.withUnsafeBufferPointer { p in
            salt.withUnsafeBufferPointer { s in
                out.withUnsafeMutableBufferPointer { o in
                    p.withMemoryRebound(to: CChar.self) { pc in
                        PKCS5_PBKDF2_HMAC_SHA1(
                            pc.baseAddress, Int32(clamping: pc.count),
                            s.baseAddress, Int32(clamping: s.count),
                            Int32(clamping: iterations), Int32(clamping: length), o.baseAddress)
                    }
                }
            }
        }
        return ok == 1 ? out : nil
    }
}

/// The system's CSPRNG, through libcrypto (which seeds from getrandom(2)).
public enum SecureRandom {
    /// `count` random bytes, or `nil` if the generator is not seeded.
    public static func bytes(_ count: Int) -> [UInt8]? {
        guard count >= 0 else { return nil }
        if count == 0 { return [] }
        var out = [UInt8](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(clamping: $0.count)) }
        return ok == 1 ? out : nil
    }
}

/// Plain message digests (SHA-1/256/512) through libcrypto's `EVP_Digest`.
public enum Digest {
    public static func hash(_ algorithm: HashAlgorithm, _ data: [UInt8]) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = data.withUnsafeBytes { d in
            out.withUnsafeMutableBufferPointer { o in
                EVP_Digest(d.baseAddress, d.count, o.baseAddress, &length, algorithm.evp, nil)
            }
        }
        guard ok == 1 else { return nil }
        return Array(out.prefix(Int(length)))
    }
}
