internal import CPOSIX

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
        ConstantTime.wipe(&block)
        ConstantTime.wipe(&ipad)
        ConstantTime.wipe(&opad)
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
