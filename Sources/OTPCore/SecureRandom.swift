internal import CPOSIX

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
