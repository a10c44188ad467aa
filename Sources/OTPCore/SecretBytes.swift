internal import CPOSIX

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

    /// Takes the bytes, leaving the caller's array empty: the storage moves, nothing is
    /// copied, so no copy is left to wipe.
    public init(consuming bytes: inout [UInt8]) {
        storage = []
        swap(&storage, &bytes)
    }

    deinit { ConstantTime.wipe(&storage) }

    public var count: Int { storage.count }

    /// Reads the secret without copying it out.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        var result: Result<R, E>?
        storage.withUnsafeBytes { buffer in
            do throws(E) { result = .success(try body(buffer)) } catch { result = .failure(error) }
        }
        switch result {
        case .success(let r)?: return r
        case .failure(let e)?: throw e
        case nil: return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
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
