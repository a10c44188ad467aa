/// HMAC challenge-response as a YKOATH CALCULATE answers it (YKOATH protocol,
/// "CALCULATE instruction"): the full HMAC, or the 31-bit dynamic truncation of it.
public enum ChallengeResponse {
    /// The full response: HMAC(secret, challenge).
    public static func full(secret: SecretBytes, challenge: [UInt8], algorithm: HashAlgorithm) -> [UInt8] {
        HMAC.authenticate(algorithm, key: secret, message: challenge)
    }

    /// The truncated response: the 4 bytes of RFC 4226 §5.3 dynamic truncation.
    public static func truncated(secret: SecretBytes, challenge: [UInt8], algorithm: HashAlgorithm) -> UInt32? {
        OTP.dynamicTruncate(full(secret: secret, challenge: challenge, algorithm: algorithm))
    }

    /// Checks a card's full response against the expected HMAC in constant time.
    public static func verify(response: [UInt8], secret: SecretBytes, challenge: [UInt8], algorithm: HashAlgorithm) -> Bool {
        var expected = full(secret: secret, challenge: challenge, algorithm: algorithm)
        defer { ConstantTime.wipe(&expected) }
        return ConstantTime.equals(expected, response)
    }
}
