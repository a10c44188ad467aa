import Testing
import CLibCrypto
import OTPCore

@Suite("SHA-1/256/512 and HMAC, written in Swift")
struct SHATests {
    @Test("FIPS 180-4 example messages, including a million 'a'")
    func fipsVectors() throws {
        let rows = try vectorRows("sha.txt")
        #expect(rows.count == 4)
        for row in rows {
            let message: [UInt8]
            switch row[0] {
            case "abc": message = Array("abc".utf8)
            case "empty": message = []
            case "two-block": message = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
            default: message = [UInt8](repeating: 0x61, count: 1_000_000)
            }
            #expect(Hex.encode(SHA1.hash(message)) == row[1], "SHA-1 \(row[0])")
            #expect(Hex.encode(SHA256.hash(message)) == row[2], "SHA-256 \(row[0])")
            #expect(Hex.encode(SHA512.hash(message)) == row[3], "SHA-512 \(row[0])")
        }
    }

    @Test("HMAC: RFC 4231 inputs, keys shorter and longer than a block")
    func hmacVectors() throws {
        let rows = try vectorRows("hmac.txt")
        #expect(rows.count == 6)
        for row in rows {
            let key = try Hex.decode(row[1]), data = try Hex.decode(row[2])
            #expect(Hex.encode(HMAC.authenticate(.sha1, key: key, message: data)) == row[3], "case \(row[0]) sha1")
            #expect(Hex.encode(HMAC.authenticate(.sha256, key: key, message: data)) == row[4], "case \(row[0]) sha256")
            #expect(Hex.encode(HMAC.authenticate(.sha512, key: key, message: data)) == row[5], "case \(row[0]) sha512")
        }
    }

    @Test("Streaming in odd pieces equals one call")
    func streaming() {
        var rng = SystemRandomNumberGenerator()
        let message = (0..<1000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var h = SHA512()
        var i = 0
        while i < message.count {
            let n = min(Int.random(in: 1...150, using: &rng), message.count - i)
            h.update(Array(message[i..<(i + n)]))
            i += n
        }
        #expect(h.finalize() == SHA512.hash(message))
    }

    /// libcrypto's answer, as an independent reference.
    func reference(_ algorithm: HashAlgorithm, key: [UInt8], message: [UInt8]) -> [UInt8] {
        let md: OpaquePointer? = algorithm == .sha1 ? EVP_sha1() : algorithm == .sha256 ? EVP_sha256() : EVP_sha512()
        var out = [UInt8](repeating: 0, count: 64)
        var length: UInt32 = 0
        _ = key.withUnsafeBytes { k in message.withUnsafeBytes { m in out.withUnsafeMutableBufferPointer { o in
            CLibCrypto.HMAC(md, k.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(k.count),
                            m.bindMemory(to: UInt8.self).baseAddress ?? UnsafePointer(bitPattern: 1), m.count, o.baseAddress, &length)
        } } }
        return Array(out.prefix(Int(length)))
    }

    @Test("Random keys and messages of every length around the block edges match libcrypto")
    func crossCheckWithLibcrypto() {
        var rng = SystemRandomNumberGenerator()
        for algorithm in HashAlgorithm.allCases {
            for length in Array(0...260) + [1000, 4096] {
                let keyLength = Int.random(in: 0...200, using: &rng)
                let key = (0..<keyLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let message = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                #expect(HMAC.authenticate(algorithm, key: key, message: message) == reference(algorithm, key: key, message: message),
                        "\(algorithm) key \(keyLength) message \(length)")
            }
        }
    }

    @Test("One prepared key, many messages: the SHA-1 fast path (up to 55 bytes) and the streaming one beyond it agree with libcrypto")
    func preparedKeyAcrossTheFastPathEdge() {
        var rng = SystemRandomNumberGenerator()
        for keyLength in [0, 1, 20, 63, 64, 65, 200] {
            let key = (0..<keyLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let prepared = key.withUnsafeBytes { HMACKey(.sha1, key: $0) }
            for length in [0, 8, 54, 55, 56, 57, 64, 119, 120] {
                let message = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                #expect(prepared.authenticate(message) == reference(.sha1, key: key, message: message), "key \(keyLength) message \(length)")
            }
        }
    }

    @Test func randomBytesDiffer() throws {
        let a = try #require(SecureRandom.bytes(32)), b = try #require(SecureRandom.bytes(32))
        #expect(a.count == 32 && a != b)
        #expect(SecureRandom.bytes(-1) == nil)
    }
}
