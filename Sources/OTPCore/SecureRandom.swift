internal import CPOSIX

/// The kernel's CSPRNG, through glibc's arc4random_buf (getrandom(2) underneath, no
/// file descriptor, nothing to initialise), found at the first use (CPOSIX).
public enum SecureRandom {
    /// `count` random bytes (nil for an absurd count, or a libc without arc4random_buf).
    public static func bytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, count <= 1 << 20 else { return nil }
        var out = [UInt8](repeating: 0, count: count)
        let drawn = out.withUnsafeMutableBytes { buffer in buffer.baseAddress.map { cposix_random($0, buffer.count) == 0 } ?? true }
        return drawn ? out : nil
    }
}
