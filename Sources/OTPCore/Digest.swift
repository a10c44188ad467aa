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
