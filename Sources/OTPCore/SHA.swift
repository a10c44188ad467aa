internal import CPOSIX

// SHA-1, SHA-256 and SHA-512 (FIPS 180-4), written here so that the PAM module loads no
// libcrypto into every sudo and sshd (what that costs is measured in Benchmarks/RESULTS.md).
// Checked against FIPS/RFC vectors and, in the tests, against libcrypto on random input.

/// A Merkle–Damgård hash with a streaming interface.
public protocol HashFunction {
    static var blockSize: Int { get }
    static var digestSize: Int { get }
    init()
    mutating func update(_ bytes: UnsafeRawBufferPointer)
    mutating func finalize() -> [UInt8]
}

extension HashFunction {
    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The digest of `bytes` in one call.
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        var h = Self()
        h.update(bytes)
        return h.finalize()
    }
}

@inline(__always) func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { (x << n) | (x >> (32 - n)) }

/// Buffering and padding shared by the three hashes (FIPS 180-4 §5.1).
struct BlockBuffer {
    var pending: [UInt8] = []
    var length: UInt64 = 0

    /// Feeds whole blocks to `compress`, keeps the rest.
    mutating func absorb(_ bytes: UnsafeRawBufferPointer, blockSize: Int, _ compress: (UnsafeRawBufferPointer) -> Void) {
        length &+= UInt64(bytes.count)
        var offset = 0
        if !pending.isEmpty {
            let take = min(blockSize - pending.count, bytes.count)
            pending.append(contentsOf: bytes[0..<take])
            offset = take
            if pending.count == blockSize {
                pending.withUnsafeBytes { compress($0) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        while bytes.count - offset >= blockSize {
            compress(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + blockSize)]))
            offset += blockSize
        }
        if offset < bytes.count { pending.append(contentsOf: bytes[offset...]) }
    }

    /// The final padding: 0x80, zeros, and the bit length big-endian in `lengthBytes`.
    mutating func pad(blockSize: Int, lengthBytes: Int, _ compress: (UnsafeRawBufferPointer) -> Void) {
        let bits = length &* 8
        // On the stack: the pending bytes, 0x80, zeros, the length (wiped: it may hold key bytes).
        let total = (pending.count + 1 + lengthBytes + blockSize - 1) / blockSize * blockSize
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: total) { tail in
            tail.initialize(repeating: 0)
            for (i, byte) in pending.enumerated() { tail[i] = byte }
            tail[pending.count] = 0x80
            for i in 0..<min(8, lengthBytes) { tail[total - 1 - i] = UInt8(truncatingIfNeeded: bits >> (UInt64(i) * 8)) }
            let t = UnsafeRawBufferPointer(tail)
            var o = 0
            while o < t.count {
                compress(UnsafeRawBufferPointer(rebasing: t[o..<(o + blockSize)]))
                o += blockSize
            }
            if let base = tail.baseAddress { explicit_bzero(base, total) }
        }
        ConstantTime.wipe(&pending)
        pending.removeAll()
    }
}

/// The digest bytes of the state words, big-endian (FIPS 180-4 §6.1.2, §6.2.2, §6.4.2).
func bigEndianBytes<W: FixedWidthInteger>(_ words: [W]) -> [UInt8] {
    let size = W.bitWidth / 8
    var out = [UInt8](repeating: 0, count: words.count * size)
    for (i, w) in words.enumerated() {
        for j in 0..<size { out[size * i + j] = UInt8(truncatingIfNeeded: w &>> ((size - 1 - j) * 8)) }
    }
    return out
}

/// The streaming half of every FIPS 180-4 hash here: `bytes` absorbed into the state `h` a
/// block at a time.
@inline(__always)
func absorb<W>(_ bytes: UnsafeRawBufferPointer, _ h: inout [W], _ buffer: inout BlockBuffer, blockSize: Int,
               _ compress: (inout [W], UnsafeRawBufferPointer) -> Void) {
    buffer.absorb(bytes, blockSize: blockSize) { compress(&h, $0) }
}

/// The last block padded with a `lengthBytes`-byte message length (§5.1), then the digest.
@inline(__always)
func finish<W: FixedWidthInteger>(_ h: inout [W], _ buffer: inout BlockBuffer, blockSize: Int, lengthBytes: Int,
                                  _ compress: (inout [W], UnsafeRawBufferPointer) -> Void) -> [UInt8] {
    buffer.pad(blockSize: blockSize, lengthBytes: lengthBytes) { compress(&h, $0) }
    return bigEndianBytes(h)
}

@inline(__always) func load32(_ p: UnsafeRawBufferPointer, _ i: Int) -> UInt32 {
    UInt32(p[i]) << 24 | UInt32(p[i + 1]) << 16 | UInt32(p[i + 2]) << 8 | UInt32(p[i + 3])
}

@inline(__always) func load64(_ p: UnsafeRawBufferPointer, _ i: Int) -> UInt64 {
    UInt64(load32(p, i)) << 32 | UInt64(load32(p, i + 4))
}

/// A message schedule of `count` words on the stack, wiped when `body` returns: it is
/// derived from the message, which in HMAC is the key pad.
@inline(__always)
func withWipedSchedule<W: FixedWidthInteger>(_: W.Type, count: Int, _ body: (UnsafeMutableBufferPointer<W>) -> Void) {
    withUnsafeTemporaryAllocation(of: W.self, capacity: count) { w in
        body(w)
        if let base = w.baseAddress { explicit_bzero(base, count * MemoryLayout<W>.size) }
    }
}

/// SHA-1 (FIPS 180-4 §6.1). Used for HOTP/TOTP and YKOATH, where RFC 4226 asks for it.
public struct SHA1: HashFunction {
    public static let blockSize = 64
    public static let digestSize = 20
    var h: [UInt32] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
    var buffer = BlockBuffer()

    public init() {}

    /// The hash of a message whose first block (an HMAC pad) gave `state`.
    init(absorbedOneBlock state: SHA1Words) {
        h = [state.a, state.b, state.c, state.d, state.e]
        buffer.length = UInt64(Self.blockSize)
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) { absorb(bytes, &h, &buffer, blockSize: Self.blockSize, Self.compress) }

    public mutating func finalize() -> [UInt8] { finish(&h, &buffer, blockSize: Self.blockSize, lengthBytes: 8, Self.compress) }

    static func compress(_ h: inout [UInt32], _ block: UnsafeRawBufferPointer) {
        var s = SHA1Words(a: h[0], b: h[1], c: h[2], d: h[3], e: h[4])
        s.compress(block)
        h[0] = s.a; h[1] = s.b; h[2] = s.c; h[3] = s.d; h[4] = s.e
    }
}

/// SHA-1's five state words by value. HMAC-SHA1 of a short message — every code a login
/// checks — runs on these alone, on the stack: no array, no buffer, no heap allocation
/// (the streaming `SHA1` above allocates several times a hash).
struct SHA1Words {
    var a: UInt32, b: UInt32, c: UInt32, d: UInt32, e: UInt32

    static let initial = SHA1Words(a: 0x67452301, b: 0xEFCDAB89, c: 0x98BADCFE, d: 0x10325476, e: 0xC3D2E1F0)

    /// FIPS 180-4 §6.1.2 for one 64-byte block.
    mutating func compress(_ block: UnsafeRawBufferPointer) {
        withWipedSchedule(UInt32.self, count: 80) { w in
            for t in 0..<16 { w[t] = load32(block, t * 4) }
            for t in 16..<80 { w[t] = rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1) }
            var a = self.a, b = self.b, c = self.c, d = self.d, e = self.e
            // The four rounds of 20 (§4.1.1, §4.2.1), five steps an iteration with the roles
            // of a…e rotated by hand: no branch and no register shuffle per step.
            for t in stride(from: 0, to: 20, by: 5) {
                e = e &+ rotl(a, 5) &+ ((b & c) | (~b & d)) &+ 0x5A827999 &+ w[t]; b = rotl(b, 30)
                d = d &+ rotl(e, 5) &+ ((a & b) | (~a & c)) &+ 0x5A827999 &+ w[t + 1]; a = rotl(a, 30)
                c = c &+ rotl(d, 5) &+ ((e & a) | (~e & b)) &+ 0x5A827999 &+ w[t + 2]; e = rotl(e, 30)
                b = b &+ rotl(c, 5) &+ ((d & e) | (~d & a)) &+ 0x5A827999 &+ w[t + 3]; d = rotl(d, 30)
                a = a &+ rotl(b, 5) &+ ((c & d) | (~c & e)) &+ 0x5A827999 &+ w[t + 4]; c = rotl(c, 30)
            }
            Self.parityRounds(20, 0x6ED9EBA1, w, &a, &b, &c, &d, &e)
            for t in stride(from: 40, to: 60, by: 5) {
                e = e &+ rotl(a, 5) &+ ((b & c) | (b & d) | (c & d)) &+ 0x8F1BBCDC &+ w[t]; b = rotl(b, 30)
                d = d &+ rotl(e, 5) &+ ((a & b) | (a & c) | (b & c)) &+ 0x8F1BBCDC &+ w[t + 1]; a = rotl(a, 30)
                c = c &+ rotl(d, 5) &+ ((e & a) | (e & b) | (a & b)) &+ 0x8F1BBCDC &+ w[t + 2]; e = rotl(e, 30)
                b = b &+ rotl(c, 5) &+ ((d & e) | (d & a) | (e & a)) &+ 0x8F1BBCDC &+ w[t + 3]; d = rotl(d, 30)
                a = a &+ rotl(b, 5) &+ ((c & d) | (c & e) | (d & e)) &+ 0x8F1BBCDC &+ w[t + 4]; c = rotl(c, 30)
            }
            Self.parityRounds(60, 0xCA62C1D6, w, &a, &b, &c, &d, &e)
            self.a &+= a; self.b &+= b; self.c &+= c; self.d &+= d; self.e &+= e
        }
    }

    /// Steps `from ..< from + 20` of the two rounds whose function is parity (b ^ c ^ d),
    /// five an iteration with the roles rotated as in `compress`.
    @inline(__always)
    static func parityRounds(_ from: Int, _ k: UInt32, _ w: UnsafeMutableBufferPointer<UInt32>,
                             _ a: inout UInt32, _ b: inout UInt32, _ c: inout UInt32, _ d: inout UInt32, _ e: inout UInt32) {
        for t in stride(from: from, to: from + 20, by: 5) {
            e = e &+ rotl(a, 5) &+ (b ^ c ^ d) &+ k &+ w[t]; b = rotl(b, 30)
            d = d &+ rotl(e, 5) &+ (a ^ b ^ c) &+ k &+ w[t + 1]; a = rotl(a, 30)
            c = c &+ rotl(d, 5) &+ (e ^ a ^ b) &+ k &+ w[t + 2]; e = rotl(e, 30)
            b = b &+ rotl(c, 5) &+ (d ^ e ^ a) &+ k &+ w[t + 3]; d = rotl(d, 30)
            a = a &+ rotl(b, 5) &+ (c ^ d ^ e) &+ k &+ w[t + 4]; c = rotl(c, 30)
        }
    }

    /// The state after the last block of a message of one whole block (already
    /// compressed into `self`: an HMAC pad) followed by `tail`, when `tail`, 0x80, zeros and
    /// the bit length fit one block (§5.1.1): 55 bytes at most, else nil.
    func finishing(afterOneBlock tail: UnsafeRawBufferPointer) -> SHA1Words? {
        guard tail.count <= 55 else { return nil }
        var s = self
        withUnsafeTemporaryAllocation(byteCount: 64, alignment: 8) { block in
            block.initializeMemory(as: UInt8.self, repeating: 0)
            if let base = tail.baseAddress, let to = block.baseAddress { to.copyMemory(from: base, byteCount: tail.count) }
            block[tail.count] = 0x80
            let bits = UInt64(64 + tail.count) &* 8
            for i in 0..<8 { block[63 - i] = UInt8(truncatingIfNeeded: bits >> (UInt64(i) * 8)) }
            s.compress(UnsafeRawBufferPointer(block))
            if let base = block.baseAddress { explicit_bzero(base, 64) }
        }
        return s
    }

    /// The digest: the five words big-endian, into 20 bytes at `out`.
    func store(into out: UnsafeMutableRawBufferPointer) {
        func put(_ w: UInt32, _ i: Int) {
            out[i] = UInt8(truncatingIfNeeded: w >> 24)
            out[i + 1] = UInt8(truncatingIfNeeded: w >> 16)
            out[i + 2] = UInt8(truncatingIfNeeded: w >> 8)
            out[i + 3] = UInt8(truncatingIfNeeded: w)
        }
        put(a, 0); put(b, 4); put(c, 8); put(d, 12); put(e, 16)
    }
}

/// The rotations (and, last in the small sigmas, the shift) of one SHA-2 width.
struct SHA2Shifts {
    let bigSigma0: (Int, Int, Int)
    let bigSigma1: (Int, Int, Int)
    let smallSigma0: (Int, Int, Int)
    let smallSigma1: (Int, Int, Int)
}

/// FIPS 180-4's SHA-2 compression, one block (§6.2.2 for SHA-256, §6.4.2 for SHA-512): the
/// same steps at both widths, with `k.count` rounds and that width's shifts. `w` holds the
/// block's 16 words; the rest of the schedule is made here.
@inline(__always)
func sha2Compress<W: FixedWidthInteger & UnsignedInteger>(_ h: inout [W], _ w: UnsafeMutableBufferPointer<W>, k: [W], _ s: SHA2Shifts) {
    @inline(__always) func rotr(_ x: W, _ n: Int) -> W { (x &>> n) | (x &<< (W.bitWidth - n)) }
    let rounds = k.count
    for t in 16..<rounds {
        let s0 = rotr(w[t - 15], s.smallSigma0.0) ^ rotr(w[t - 15], s.smallSigma0.1) ^ (w[t - 15] &>> s.smallSigma0.2)
        let s1 = rotr(w[t - 2], s.smallSigma1.0) ^ rotr(w[t - 2], s.smallSigma1.1) ^ (w[t - 2] &>> s.smallSigma1.2)
        w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
    }
    var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
    for t in 0..<rounds {
        let s1 = rotr(e, s.bigSigma1.0) ^ rotr(e, s.bigSigma1.1) ^ rotr(e, s.bigSigma1.2)
        let ch = (e & f) ^ (~e & g)
        let t1 = hh &+ s1 &+ ch &+ k[t] &+ w[t]
        let s0 = rotr(a, s.bigSigma0.0) ^ rotr(a, s.bigSigma0.1) ^ rotr(a, s.bigSigma0.2)
        let maj = (a & b) ^ (a & c) ^ (b & c)
        let t2 = s0 &+ maj
        hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
    }
    h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
}

/// SHA-256 (FIPS 180-4 §6.2).
public struct SHA256: HashFunction {
    public static let blockSize = 64
    public static let digestSize = 32
    /// §4.2.2: the first 32 bits of the fractional parts of the cube roots of the first 64 primes.
    static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]
    /// §4.1.2: Σ0, Σ1, σ0 and σ1 of SHA-256.
    static let shifts = SHA2Shifts(bigSigma0: (2, 13, 22), bigSigma1: (6, 11, 25), smallSigma0: (7, 18, 3), smallSigma1: (17, 19, 10))
    /// §5.3.3: the first 32 bits of the fractional parts of the square roots of the first 8 primes.
    var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    var buffer = BlockBuffer()

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) { absorb(bytes, &h, &buffer, blockSize: Self.blockSize, Self.compress) }

    public mutating func finalize() -> [UInt8] { finish(&h, &buffer, blockSize: Self.blockSize, lengthBytes: 8, Self.compress) }

    static func compress(_ h: inout [UInt32], _ block: UnsafeRawBufferPointer) {
        withWipedSchedule(UInt32.self, count: 64) { w in
            for t in 0..<16 { w[t] = load32(block, t * 4) }
            sha2Compress(&h, w, k: k, shifts)
        }
    }
}

/// SHA-512 (FIPS 180-4 §6.4).
public struct SHA512: HashFunction {
    public static let blockSize = 128
    public static let digestSize = 64
    /// §4.2.3: the first 64 bits of the fractional parts of the cube roots of the first 80 primes.
    static let k: [UInt64] = [
        0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
        0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
        0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
        0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
        0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
        0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
        0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
        0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
        0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
        0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
        0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
        0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
        0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
        0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
        0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
        0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
        0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
        0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
        0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
        0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
    ]
    /// §4.1.3: Σ0, Σ1, σ0 and σ1 of SHA-512.
    static let shifts = SHA2Shifts(bigSigma0: (28, 34, 39), bigSigma1: (14, 18, 41), smallSigma0: (1, 8, 7), smallSigma1: (19, 61, 6))
    /// §5.3.5: the first 64 bits of the fractional parts of the square roots of the first 8 primes.
    var h: [UInt64] = [
        0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
        0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
    ]
    var buffer = BlockBuffer()

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) { absorb(bytes, &h, &buffer, blockSize: Self.blockSize, Self.compress) }

    public mutating func finalize() -> [UInt8] { finish(&h, &buffer, blockSize: Self.blockSize, lengthBytes: 16, Self.compress) }

    static func compress(_ h: inout [UInt64], _ block: UnsafeRawBufferPointer) {
        withWipedSchedule(UInt64.self, count: 80) { w in
            for t in 0..<16 { w[t] = load64(block, t * 8) }
            sha2Compress(&h, w, k: k, shifts)
        }
    }
}
