/// An `otpauth://` Key URI, the format Google Authenticator defined and Yubico
/// Authenticator reads: `otpauth://TYPE/ISSUER:ACCOUNT?secret=…&issuer=…&algorithm=…&digits=…&period=…&counter=…`.
public struct OTPAuthURI: Sendable, Equatable {
    public var parameters: OTPParameters
    /// The secret, Base32 as in the URI (kept encoded: the URI is what a phone scans).
    public var secretBase32: String
    public var issuer: String?
    public var account: String
    /// Initial counter, for HOTP.
    public var counter: UInt64

    public init(parameters: OTPParameters, secretBase32: String, issuer: String?, account: String, counter: UInt64 = 0) {
        self.parameters = parameters
        self.secretBase32 = secretBase32
        self.issuer = issuer
        self.account = account
        self.counter = counter
    }

    /// The URI text. Labels and values are percent-encoded; default values are written
    /// anyway, since some apps ignore what they do not see.
    public func format() -> String {
        var label = ""
        if let issuer { label = Self.percentEncode(issuer) + ":" }
        label += Self.percentEncode(account)
        var query = "secret=" + secretBase32.replacingSpaces()
        if let issuer { query += "&issuer=" + Self.percentEncode(issuer) }
        query += "&algorithm=" + parameters.algorithm.description.uppercased()
        query += msg("&digits=\(parameters.digits)")
        switch parameters.kind {
        case .totp(let period): return msg("otpauth://totp/\(label)?\(query)&period=\(period)")
        case .hotp: return msg("otpauth://hotp/\(label)?\(query)&counter=\(counter)")
        }
    }

    /// Parses a Key URI. Unknown query parameters (`image`, …) are ignored; a missing or
    /// invalid secret, type, digits, period or algorithm is an error naming the field.
    public static func parse(_ text: String) throws(OTPError) -> OTPAuthURI {
        let scheme = "otpauth://"
        guard text.lowercased().hasPrefix(scheme) else { throw .invalidURI("scheme is not otpauth://") }
        let rest = text.dropFirst(scheme.count)
        guard let slash = rest.firstIndex(of: "/") else { throw .invalidURI("missing type") }
        let type = rest[..<slash].lowercased()
        let afterType = rest[rest.index(after: slash)...]
        let labelPart: Substring
        let queryPart: Substring
        if let q = afterType.firstIndex(of: "?") {
            labelPart = afterType[..<q]
            queryPart = afterType[afterType.index(after: q)...]
        } else {
            labelPart = afterType
            queryPart = ""
        }
        guard let label = percentDecode(labelPart) else { throw .invalidURI("label is not valid percent-encoded UTF-8") }
        var fields: [String: String] = [:]
        for pair in queryPart.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = kv.first, let value = percentDecode(kv.count > 1 ? kv[1] : "") else {
                throw .invalidURI("query is not valid percent-encoded UTF-8")
            }
            fields[key.lowercased()] = value
        }
        guard let secret = fields["secret"], !secret.isEmpty else { throw .invalidURI("missing secret") }
        let decoded = try Base32.decode(secret)
        try OTPParameters.checkSecret(length: decoded.count)
        var algorithm = HashAlgorithm.sha1
        if let a = fields["algorithm"] {
            guard let parsed = HashAlgorithm(name: a) else { throw .invalidURI(msg("unknown algorithm \(a)")) }
            algorithm = parsed
        }
        var digits = 6
        if let d = fields["digits"] {
            guard let parsed = Int(d) else { throw .invalidURI("digits is not a number") }
            digits = parsed
        }
        let kind: OTPKind
        var counter: UInt64 = 0
        switch type {
        case "totp":
            var period = 30
            if let p = fields["period"] {
                guard let parsed = Int(p) else { throw .invalidURI("period is not a number") }
                period = parsed
            }
            kind = .totp(period: period)
        case "hotp":
            if let c = fields["counter"] {
                guard let parsed = UInt64(c) else { throw .invalidURI("counter is not a number") }
                counter = parsed
            }
            kind = .hotp
        default:
            throw .invalidURI("type must be totp or hotp")
        }
        let parameters = try OTPParameters(kind: kind, algorithm: algorithm, digits: digits)
        // The label is ISSUER:ACCOUNT, the colon literal or encoded. An issuer parameter
        // names the prefix exactly (it may itself hold a colon); else split at the first.
        var labelIssuer: String?
        var account = label.trimmingSpaces()
        if let issuer = fields["issuer"], label.hasPrefix(issuer + ":") {
            labelIssuer = issuer
            account = String(label.dropFirst(issuer.count + 1)).trimmingSpaces()
        } else if let colon = label.firstIndex(of: ":") {
            labelIssuer = String(label[..<colon]).trimmingSpaces()
            account = String(label[label.index(after: colon)...]).trimmingSpaces()
        }
        let issuer = fields["issuer"] ?? labelIssuer
        return OTPAuthURI(parameters: parameters, secretBase32: secret, issuer: issuer, account: account, counter: counter)
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters.
    public static func percentEncode(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for b in text.utf8 {
            switch b {
            case 0x41...0x5A, 0x61...0x7A, 0x30...0x39, 0x2D, 0x2E, 0x5F, 0x7E: out.append(b)
            default:
                out.append(0x25); out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes %XX escapes (and `+` as a space, as form encoding writes it); `nil` on a
    /// broken escape or bytes that are not UTF-8.
    public static func percentDecode<S: StringProtocol>(_ text: S) -> String? {
        var out: [UInt8] = []
        var it = Array(text.utf8)[...]
        while let b = it.popFirst() {
            if b == 0x25 {
                guard let h = it.popFirst(), let l = it.popFirst(),
                      let hv = hexValue(h), let lv = hexValue(l) else { return nil }
                out.append(hv << 4 | lv)
            } else if b == 0x2B {
                out.append(0x20)
            } else {
                out.append(b)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b - 0x30
        case 0x41...0x46: return b - 0x41 + 10
        case 0x61...0x66: return b - 0x61 + 10
        default: return nil
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and line ends (no Foundation here): the
    /// one trim of labels, imported codes and configuration lines.
    public func trimmingSpaces() -> String {
        func blank(_ c: Character) -> Bool { c == " " || c == "\t" || c == "\r" || c == "\n" }
        var s = self[...]
        while let c = s.first, blank(c) { s = s.dropFirst() }
        while let c = s.last, blank(c) { s = s.dropLast() }
        return String(s)
    }
}

extension String {
    func replacingSpaces() -> String { String(filter { $0 != " " }) }
}
