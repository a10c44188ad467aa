/// What can go wrong in the OTP engine. Each case says, in one line, what was wrong
/// with the input; none of them carries a secret or a code.
public enum OTPError: Error, Equatable, Sendable, CustomStringConvertible {
    case digitsOutOfRange(Int)
    case periodOutOfRange(Int)
    case secretLength(Int)
    case invalidBase32(position: Int, character: String)
    case invalidHex(position: Int)
    case invalidURI(String)

    public var description: String {
        switch self {
        case .digitsOutOfRange(let d): return msg("digits must be 6, 7 or 8 (got \(d))")
        case .periodOutOfRange(let p): return msg("period must be 1 to 3600 seconds (got \(p))")
        case .secretLength(let n): return msg("a secret must be 1 to \(OTPParameters.maxSecretLength) bytes (got \(n))")
        case .invalidBase32(let pos, let ch): return msg("invalid Base32 character \(ch) at position \(pos)")
        case .invalidHex(let pos): return msg("invalid hexadecimal digit at position \(pos)")
        case .invalidURI(let why): return msg("invalid otpauth URI: \(why)")
        }
    }
}
