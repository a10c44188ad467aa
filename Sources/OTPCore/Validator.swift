/// The outcome of checking a typed one-time code.
public enum ValidationResult: Sendable, Equatable {
    /// The code matched this counter or time step, which is newer than any used before:
    /// store it as the new last-used value.
    case accepted(counter: UInt64)
    /// The code matched a counter or step at or below the last one used: a replay.
    case replayed(counter: UInt64)
    /// No counter or step in the window matched, or the input was not a code.
    case rejected
}

/// Checks TOTP codes (RFC 6238) with a skew of ±`skew` steps and the replay rule.
///
/// Codes are compared as numbers below 10^digits: a fixed-width integer comparison takes
/// the same time whatever the digits. The steps are tried newest first and the first match
/// decides (the newest step a code matches is the one the replay rule needs): a login with
/// a clock in step computes two codes, not three. How long that takes tells at most which
/// step matched — the token's clock against ours, which is no secret; whether it matched
/// at all the verdict says anyway.
public struct TOTPValidator: Sendable {
    public let period: Int
    public let algorithm: HashAlgorithm
    public let digits: Int
    public let skew: Int

    public init(parameters: OTPParameters, skew: Int) {
        if case .totp(let p) = parameters.kind { period = p } else { period = 30 }
        algorithm = parameters.algorithm
        digits = parameters.digits
        self.skew = max(0, min(skew, 100))
    }

    /// Checks `typed` against the steps in `now ± skew`, newest first. `lastUsedStep` is
    /// the last step accepted before (nil: none yet).
    public func validate(_ typed: String, secret: SecretBytes, at unixTime: Int64, lastUsedStep: UInt64?) -> ValidationResult {
        guard let code = OTP.typedValue(typed, digits: digits),
              let current = OTP.timeStep(at: unixTime, period: period) else { return .rejected }
        let low = current >= UInt64(skew) ? current - UInt64(skew) : 0
        let (high, overflow) = current.addingReportingOverflow(UInt64(skew))
        guard !overflow else { return .rejected }
        return matchNewest(code, secret: secret, range: low...high, lastUsed: lastUsedStep)
    }

    private func matchNewest(_ code: UInt32, secret: SecretBytes, range: ClosedRange<UInt64>, lastUsed: UInt64?) -> ValidationResult {
        let key = HMACKey(algorithm, key: secret)
        var step = range.upperBound
        while true {
            if OTP.hotpValue(key: key, counter: step, digits: digits) == code {
                if let last = lastUsed, step <= last { return .replayed(counter: step) }
                return .accepted(counter: step)
            }
            guard step > range.lowerBound else { return .rejected }
            step -= 1
        }
    }
}

/// Checks HOTP codes (RFC 4226 §7.4) with a look-ahead window and the replay rule.
public struct HOTPValidator: Sendable {
    public let algorithm: HashAlgorithm
    public let digits: Int
    public let window: Int

    public init(parameters: OTPParameters, window: Int) {
        algorithm = parameters.algorithm
        digits = parameters.digits
        self.window = max(1, min(window, 100_000))
    }

    /// Checks `typed` against counters `next ..< next + window`, where `next` is one past
    /// `lastUsedCounter` (or `initialCounter` when the token was never used). A code equal
    /// to the last used counter's is reported as a replay.
    public func validate(_ typed: String, secret: SecretBytes, initialCounter: UInt64, lastUsedCounter: UInt64?) -> ValidationResult {
        guard let code = OTP.typedValue(typed, digits: digits) else { return .rejected }
        let key = HMACKey(algorithm, key: secret)
        var next = initialCounter
        if let last = lastUsedCounter {
            let (n, overflow) = last.addingReportingOverflow(1)
            guard !overflow else { return .rejected }
            next = max(next, n)
        }
        // Oldest first, and the first match decides (it is the counter RFC 4226 resumes
        // from). The search stops there: a token in step computes one code, not the whole
        // window. How long that takes tells at most which counter matched, which the
        // accepted verdict moves the record to anyway; a code that matches nothing always
        // computes every counter in the window.
        var counter = next
        for _ in 0..<window {
            if OTP.hotpValue(key: key, counter: counter, digits: digits) == code { return .accepted(counter: counter) }
            let (c, overflow) = counter.addingReportingOverflow(1)
            if overflow { break }
            counter = c
        }
        if let last = lastUsedCounter, OTP.hotpValue(key: key, counter: last, digits: digits) == code {
            return .replayed(counter: last)
        }
        return .rejected
    }

    /// Resynchronises a token that drifted past the window (RFC 4226 §7.4): finds the
    /// first counter `c` in `start ..< start + searchLimit` where `first` is HOTP(c) and
    /// `second` is HOTP(c + 1). Returns `c + 1`, the new last-used counter.
    public func resync(first: String, second: String, secret: SecretBytes, start: UInt64, searchLimit: Int) -> UInt64? {
        guard let a = OTP.typedValue(first, digits: digits), let b = OTP.typedValue(second, digits: digits) else { return nil }
        let key = HMACKey(algorithm, key: secret)
        var counter = start
        var previousMatched = false
        for _ in 0...max(1, min(searchLimit, 1_000_000)) {
            guard let candidate = OTP.hotpValue(key: key, counter: counter, digits: digits) else { return nil }
            if previousMatched && candidate == b { return counter }
            previousMatched = candidate == a
            let (c, overflow) = counter.addingReportingOverflow(1)
            if overflow { return nil }
            counter = c
        }
        return nil
    }
}
