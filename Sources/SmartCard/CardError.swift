import OTPCore

/// Everything that can go wrong between the host and a card, as a typed error with a
/// plain one-line message. PC/SC results, ISO 7816 status words and YKOATH refusals
/// each get their own case so that callers decide without string matching.
public enum CardError: Error, Equatable, Sendable, CustomStringConvertible {
    /// pcscd is not running or its socket cannot be reached.
    case noService
    /// pcscd runs but no reader (matching the filter) is connected.
    case noReaders
    /// No card was presented before the deadline.
    case timeout
    /// The card left the field (or was unplugged) during an exchange.
    case cardRemoved
    /// Another process holds the card exclusively.
    case sharingViolation
    /// The card does not answer (no ATR, mute card, transmission failure).
    case unresponsiveCard
    /// Any other PC/SC failure, with the function and its SCARD_* code.
    case pcsc(function: String, code: Int64)
    /// The card answered with a status word other than 9000.
    case status(UInt16)
    /// The answer could not be parsed (truncated TLV, missing tag, wrong length).
    case malformedResponse(String)
    /// The applet is protected by an access code and no (or a wrong) key was given.
    case accessCodeRequired
    case wrongAccessCode
    /// A touch-required credential got no touch in time.
    case touchTimeout
    /// The OATH applet is not on this card.
    case applicationNotFound
    /// The named credential is not on the card.
    case noSuchCredential
    /// The card is not the one the record names.
    case wrongCard
    /// The verifier could not issue a challenge for the tap.
    case verifierUnavailable

    public var description: String {
        switch self {
        case .noService: return "the PC/SC service (pcscd) is not running"
        case .noReaders: return "no smart card reader is connected"
        case .timeout: return "no card was presented in time"
        case .cardRemoved: return "the card was removed during the exchange"
        case .sharingViolation: return "another program is using the card"
        case .unresponsiveCard: return "the card does not respond"
        case .pcsc(let f, let c): return msg("\(f) failed: 0x\(String(UInt64(bitPattern: c) & 0xFFFF_FFFF, radix: 16))")
        case .status(let sw): return msg("the card refused the command (status \(StatusWord.hex(sw)))")
        case .malformedResponse(let why): return msg("malformed answer from the card: \(why)")
        case .accessCodeRequired: return "the card's OATH applet is protected by an access code"
        case .wrongAccessCode: return "the card rejected the access code"
        case .touchTimeout: return "the key was not touched in time"
        case .applicationNotFound: return "the card has no OATH applet"
        case .noSuchCredential: return "the credential is not on the card"
        case .wrongCard: return "this is not the enrolled card"
        case .verifierUnavailable: return "no challenge could be issued for the tap"
        }
    }
}

/// ISO 7816-4 §5.1.3 status words used here, named as in the standard.
public enum StatusWord {
    public static let success: UInt16 = 0x9000
    public static let wrongLength: UInt16 = 0x6700
    public static let securityStatusNotSatisfied: UInt16 = 0x6982
    public static let authenticationMethodBlocked: UInt16 = 0x6983
    /// YKOATH: "no such object".
    public static let referencedDataInvalid: UInt16 = 0x6984
    /// YKOATH: touch required and not given; also "conditions of use not satisfied".
    public static let conditionsNotSatisfied: UInt16 = 0x6985
    public static let incorrectData: UInt16 = 0x6A80
    public static let fileNotFound: UInt16 = 0x6A82
    public static let notEnoughMemory: UInt16 = 0x6A84
    public static let incorrectP1P2: UInt16 = 0x6B00
    public static let instructionNotSupported: UInt16 = 0x6D00
    public static let classNotSupported: UInt16 = 0x6E00
    public static let noPreciseDiagnosis: UInt16 = 0x6F00
    /// YKOATH: generic error / memory failure.
    public static let memoryFailure: UInt16 = 0x6581

    public static func hex(_ sw: UInt16) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for shift in [12, 8, 4, 0] { out.append(digits[Int((sw >> UInt16(shift)) & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
