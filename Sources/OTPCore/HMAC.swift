internal import CPOSIX

/// An HMAC key with the inner and outer pads already absorbed (RFC 2104 §2), so that each
/// message costs only its own blocks: a HOTP window of 1000 counters pays for the key once.
public struct HMACKey {
    public let algorithm: HashAlgorithm
    private let pads: Pads

    /// SHA-1's pads as state words (the fast path: a message of up to 55 bytes, every
    /// HOTP/TOTP counter and card challenge, costs two compressions and no allocation);
    /// the streaming hashes for SHA-256 and SHA-512.
    private enum Pads {
        case sha1(inner: SHA1Words, outer: SHA1Words)
        case streaming(inner: HashState, outer: HashState)
    }

    public init(_ algorithm: HashAlgorithm, key: UnsafeRawBufferPointer) {
        self.algorithm = algorithm
        let size = algorithm.blockSize
        // The key block, then each pad, on the stack and wiped.
        pads = withUnsafeTemporaryAllocation(byteCount: 2 * size, alignment: 8) { buffer -> Pads in
            let block = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size])
            let pad = UnsafeMutableRawBufferPointer(rebasing: buffer[size...])
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            if key.count > size {
                var long = HashState(algorithm)
                long.update(key)
                var digest = long.finalize()
                for (i, byte) in digest.enumerated() { block[i] = byte }
                ConstantTime.wipe(&digest)
            } else if let from = key.baseAddress, let to = block.baseAddress {
                to.copyMemory(from: from, byteCount: key.count)
            }
            func padded(_ x: UInt8) -> UnsafeRawBufferPointer {
                for i in 0..<size { pad[i] = block[i] ^ x }
                return UnsafeRawBufferPointer(pad)
            }
            let result: Pads
            if algorithm == .sha1 {
                var inner = SHA1Words.initial, outer = SHA1Words.initial
                inner.compress(padded(0x36))
                outer.compress(padded(0x5C))
                result = .sha1(inner: inner, outer: outer)
            } else {
                var inner = HashState(algorithm), outer = HashState(algorithm)
                inner.update(padded(0x36))
                outer.update(padded(0x5C))
                result = .streaming(inner: inner, outer: outer)
            }
            if let base = buffer.baseAddress { explicit_bzero(base, 2 * size) }
            return result
        }
    }

    public init(_ algorithm: HashAlgorithm, key: SecretBytes) {
        self = key.withUnsafeBytes { HMACKey(algorithm, key: $0) }
    }

    /// HMAC(key, message).
    public func authenticate(_ message: UnsafeRawBufferPointer) -> [UInt8] {
        switch pads {
        case .sha1(let inner, let outer):
            if let innerState = inner.finishing(afterOneBlock: message) {
                var mac = [UInt8](repeating: 0, count: SHA1.digestSize)
                withUnsafeTemporaryAllocation(byteCount: SHA1.digestSize, alignment: 8) { digest in
                    innerState.store(into: digest)
                    // 20 bytes always fit: never nil.
                    let outerState = outer.finishing(afterOneBlock: UnsafeRawBufferPointer(digest)) ?? outer
                    mac.withUnsafeMutableBytes { outerState.store(into: $0) }
                    if let base = digest.baseAddress { explicit_bzero(base, SHA1.digestSize) }
                }
                return mac
            }
            return Self.streaming(.sha1(SHA1(absorbedOneBlock: inner)), .sha1(SHA1(absorbedOneBlock: outer)), message)
        case .streaming(let inner, let outer):
            return Self.streaming(inner, outer, message)
        }
    }

    private static func streaming(_ inner: HashState, _ outer: HashState, _ message: UnsafeRawBufferPointer) -> [UInt8] {
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
