#if canImport(Glibc)
import Glibc
#endif

/// Comparisons whose running time does not depend on where two secrets differ.
public enum ConstantTime {
    /// True when `a` and `b` are equal. Lengths are not secret (a code's length is
    /// public), so unequal lengths return at once; equal lengths are compared by OR-ing
    /// the XOR of every byte pair, with no early exit.
    public static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in equals(pa, pb) } }
    }

    /// The same over raw buffers of equal length.
    @inline(never)
    public static func equals(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    /// Wipes an optional buffer in place (optional chaining mutates without copying).
    public static func wipe(_ bytes: inout [UInt8]?) {
        bytes?.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { explicit_bzero(base, buffer.count) }
        }
    }

    /// Wipes raw memory (a C struct that held a secret).
    public static func wipeRaw(_ pointer: UnsafeMutablePointer<UInt8>, count: Int) {
        explicit_bzero(pointer, count)
    }

    /// Compares the UTF-8 bytes of two strings in constant time.
    public static func equals(_ a: String, _ b: String) -> Bool {
        equals(Array(a.utf8), Array(b.utf8))
    }

    /// Overwrites `bytes` with zeros in a way the optimiser may not remove (explicit_bzero).
    public static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { explicit_bzero(base, buffer.count) }
        }
    }
}

/// A secret key that is zeroed when the last reference goes away.
///
/// The bytes never leave this object as an `Array` (only through `withUnsafeBytes`),
/// so its storage stays uniquely referenced and the wipe in `deinit` reaches it.
/// Create it from an array that you then wipe, or with `init(consuming:)`.
public final class SecretBytes: @unchecked Sendable {
    // Immutable after init; @unchecked because a class with a `var` cannot be Sendable,
    // and the var exists only so deinit can wipe it.
    private var storage: [UInt8]

    /// Takes a copy of `bytes`; the caller wipes its own copy.
    public init(_ bytes: [UInt8]) { storage = bytes }

    /// Takes the bytes and wipes the caller's array.
    public init(consuming bytes: inout [UInt8]) {
        storage = Array(bytes)
        ConstantTime.wipe(&bytes)
        bytes = []
    }

    deinit { ConstantTime.wipe(&storage) }

    public var count: Int { storage.count }

    /// Reads the secret without copying it out.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes(body)
    }

    /// Compares with another secret in constant time.
    public func constantTimeEquals(_ other: SecretBytes) -> Bool {
        guard count == other.count else { return false }
        return withUnsafeBytes { a in other.withUnsafeBytes { b in ConstantTime.equals(a, b) } }
    }

    /// A copy of the bytes, for the few places (records, APDUs) that must serialise
    /// the secret. Wipe the copy when done.
    public func copyBytes() -> [UInt8] { Array(storage) }
}
