/// Whether a credential counts events (HOTP, RFC 4226) or time steps (TOTP, RFC 6238).
public enum OTPKind: Sendable, Equatable {
    case hotp
    case totp(period: Int)
}

/// Everything except the secret that defines how codes are computed.
public struct OTPParameters: Sendable, Equatable {
    /// Longest secret accepted: 64 bytes, a SHA-512 block's half and more than any
    /// authenticator app issues.
    public static let maxSecretLength = 64
    /// Shortest secret a new token may have: 16 bytes. RFC 4226 §4 (R6): "The length of the
    /// shared secret MUST be at least 128 bits" (160 recommended). Records written before
    /// this rule keep their tokens; enrolment and import refuse shorter ones.
    public static let minSecretLength = 16

    public var kind: OTPKind
    public var algorithm: HashAlgorithm
    public var digits: Int

    /// Validates the ranges: 6–8 digits (RFC 4226 §5.3 asks for at least 6), period 1–3600 s.
    public init(kind: OTPKind, algorithm: HashAlgorithm = .sha1, digits: Int = 6) throws(OTPError) {
        guard (6...8).contains(digits) else { throw .digitsOutOfRange(digits) }
        if case .totp(let period) = kind, !(1...3600).contains(period) { throw .periodOutOfRange(period) }
        self.kind = kind
        self.algorithm = algorithm
        self.digits = digits
    }

    /// Checks a secret's length against what this engine accepts.
    public static func checkSecret(length: Int) throws(OTPError) {
        guard (1...maxSecretLength).contains(length) else { throw .secretLength(length) }
    }
}

/// The HOTP/TOTP arithmetic as free functions, tested without a card or a clock.
public enum OTP {
    /// 10^digits for 6, 7, 8.
    static func modulus(digits: Int) -> UInt32 {
        switch digits {
        case 7: return 10_000_000
        case 8: return 100_000_000
        default: return 1_000_000
        }
    }

    /// The counter as the 8-byte big-endian message HOTP hashes (RFC 4226 §5.1) and
    /// YKOATH sends as a TOTP challenge.
    public static func counterBytes(_ counter: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: counter >> (56 - 8 * UInt64($0))) }
    }

    /// Dynamic truncation (RFC 4226 §5.3): the 31-bit value taken at the offset named by
    /// the low nibble of the last byte. `nil` for a MAC shorter than 20 bytes.
    public static func dynamicTruncate(_ mac: [UInt8]) -> UInt32? {
        guard mac.count >= 20, let last = mac.last else { return nil }
        let offset = Int(last & 0x0F)
        guard offset + 3 < mac.count else { return nil }
        return (UInt32(mac[offset] & 0x7F) << 24) | (UInt32(mac[offset + 1]) << 16)
            | (UInt32(mac[offset + 2]) << 8) | UInt32(mac[offset + 3])
    }

    /// The decimal code for a truncated value, zero-padded to `digits`.
    public static func format(_ value: UInt32, digits: Int) -> String {
        let code = value % modulus(digits: digits)
        var text = String(code)
        while text.count < digits { text = "0" + text }
        return text
    }

    /// HOTP(K, C) as a string of `digits` digits (RFC 4226 §5.3).
    public static func hotp(secret: SecretBytes, counter: UInt64, algorithm: HashAlgorithm, digits: Int) -> String? {
        hotpValue(key: HMACKey(algorithm, key: secret), counter: counter, digits: digits).map { format($0, digits: digits) }
    }

    /// HOTP(K, C) as a number below 10^digits, with a prepared key (the validators' loop).
    public static func hotpValue(key: HMACKey, counter: UInt64, digits: Int) -> UInt32? {
        // The counter's 8 bytes big-endian (RFC 4226 §5.1), from the stack.
        let mac = withUnsafeBytes(of: counter.bigEndian) { key.authenticate($0) }
        return dynamicTruncate(mac).map { $0 % modulus(digits: digits) }
    }

    /// The number a typed code stands for, when it is exactly `digits` digits (spaces and
    /// hyphens dropped).
    public static func typedValue(_ typed: String, digits: Int) -> UInt32? {
        guard let ascii = normalise(typed, digits: digits) else { return nil }
        return ascii.reduce(UInt32(0)) { $0 * 10 + UInt32($1 - 0x30) }
    }

    /// The TOTP time step for a Unix time (RFC 6238 §4.2): floor((time − T0) / period).
    /// `nil` before T0 or for a period below 1.
    public static func timeStep(at unixTime: Int64, period: Int, t0: Int64 = 0) -> UInt64? {
        guard period > 0, unixTime >= t0 else { return nil }
        let (elapsed, overflow) = unixTime.subtractingReportingOverflow(t0)
        guard !overflow else { return nil }
        return UInt64(elapsed / Int64(period))
    }

    /// The code a credential shows at a counter (HOTP) or time step (TOTP).
    public static func code(secret: SecretBytes, parameters: OTPParameters, counter: UInt64) -> String? {
        hotp(secret: secret, counter: counter, algorithm: parameters.algorithm, digits: parameters.digits)
    }

    /// Normalises a typed code: drops spaces (apps show "123 456"); `nil` unless what is
    /// left is exactly `digits` ASCII digits.
    public static func normalise(_ typed: String, digits: Int) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(digits)
        for byte in typed.utf8 {
            if byte == 0x20 || byte == 0x2D { continue }  // space, hyphen
            guard (0x30...0x39).contains(byte), out.count < digits else { return nil }
            out.append(byte)
        }
        return out.count == digits ? out : nil
    }
}
