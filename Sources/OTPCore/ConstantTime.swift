internal import CPOSIX

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
        // Eight bytes a step, then the rest one by one: every byte is still read and
        // OR-ed in, whatever differs (a whole record is compared on every login).
        var difference: UInt64 = 0
        var i = 0
        while i + 8 <= a.count {
            difference |= a.loadUnaligned(fromByteOffset: i, as: UInt64.self) ^ b.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < a.count {
            difference |= UInt64(a[i] ^ b[i])
            i += 1
        }
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
