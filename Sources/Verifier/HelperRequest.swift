import OTPCore
import TokenStore

extension HelperProtocol {
    /// One request as the verifier reads it: the operation named on the helper's command
    /// line (or in smartotpd's URL) with its arguments, one a line (standard input, or the
    /// request body).
    public enum Request: Sendable, Equatable {
        case summary
        case challenge
        case access(tokenID: String, cardChallenge: [UInt8], ourChallenge: [UInt8])
        case perform(RecordOperation)
        /// Offline logins to report (`OfflineReport` lines; may be none): the fleet answers
        /// the user's offline epoch.
        case offline(report: [String])

        /// The operation's name on the command line and in URLs.
        public var operation: Operation {
            switch self {
            case .summary: return .summary
            case .challenge: return .challenge
            case .access: return .access
            case .perform(.code): return .code
            case .perform(.password): return .password
            case .perform(.tap): return .tap
            case .perform(.enrollSelf): return .enrollSelf
            case .perform(.confirmSelf): return .confirmSelf
            case .perform(.passwordSelf): return .passwordSelf
            case .offline: return .offline
            }
        }

        /// The argument lines (holds the code or password: the caller wipes what it sends).
        public var input: String {
            switch self {
            case .summary, .challenge: return ""
            case .access(let id, let card, let ours): return id + "\n" + Hex.encode(card) + "\n" + Hex.encode(ours) + "\n"
            case .perform(.code(let c)): return c + "\n"
            case .perform(.password(let p)): return p + "\n"
            case .perform(.tap(let id, let challenge, let response)):
                return id + "\n" + Hex.encode(challenge) + "\n" + Hex.encode(response) + "\n"
            case .perform(.enrollSelf(let invitation, let secret)): return invitation + "\n" + Base32.encode(secret) + "\n"
            case .perform(.confirmSelf(let code)): return code + "\n"
            case .perform(.passwordSelf(let code, let current, let new)): return code + "\n" + current + "\n" + new + "\n"
            case .offline(let lines):
                var text = ""
                for l in lines { text += l + "\n" }
                return text
            }
        }
    }

    /// Reads a request's argument lines.
    public static func request(_ operation: Operation, lines: [String]) throws(ParseError) -> Request {
        func hex(_ i: Int) -> [UInt8]? {
            guard lines.indices.contains(i), let b = try? Hex.decode(lines[i]), (1...64).contains(b.count) else { return nil }
            return b
        }
        switch operation {
        case .summary: return .summary
        case .challenge: return .challenge
        case .access:
            guard lines.count >= 3, let card = hex(1), let ours = hex(2) else {
                throw ParseError("access needs TOKEN, CARD-CHALLENGE-HEX, OUR-CHALLENGE-HEX lines")
            }
            return .access(tokenID: lines[0], cardChallenge: card, ourChallenge: ours)
        case .code: return .perform(.code(lines.first ?? ""))
        case .password: return .perform(.password(lines.first ?? ""))
        case .tap:
            guard lines.count >= 3, let challenge = hex(1), let response = hex(2) else {
                throw ParseError("tap needs TOKEN, CHALLENGE-HEX, RESPONSE-HEX lines")
            }
            return .perform(.tap(tokenID: lines[0], challenge: challenge, response: response))
        case .enrollSelf:
            guard lines.count >= 2, let secret = try? Base32.decode(lines[1]),
                  (OTPParameters.minSecretLength...OTPParameters.maxSecretLength).contains(secret.count) else {
                throw ParseError("self-enroll needs INVITATION and SECRET-BASE32 (128 bits at least) lines")
            }
            return .perform(.enrollSelf(invitation: lines[0], secret: secret))
        case .confirmSelf: return .perform(.confirmSelf(code: lines.first ?? ""))
        case .passwordSelf:
            guard lines.count >= 3 else { throw ParseError("self-passwd needs CODE, CURRENT-PASSWORD (empty when none) and NEW-PASSWORD lines") }
            return .perform(.passwordSelf(code: lines[0], current: lines[1], new: lines[2]))
        case .offline:
            var report: [String] = []
            for l in lines where !l.isEmpty {
                guard OfflineReport.isValid(l) else { throw ParseError("offline needs report lines: UNIX-TIME RESULT SERVICE RHOST") }
                report.append(l)
            }
            guard report.count <= OfflineReport.maxLines else { throw ParseError("too many offline report lines") }
            return .offline(report: report)
        }
    }

    /// The lines of a request body (at most `limit` bytes were read).
    public static func lines(_ bytes: [UInt8]) -> [String] {
        String(decoding: bytes, as: UTF8.self).splitBytes(UInt8(ascii: "\n"), omittingEmpty: false)
    }

    /// What the verifier answers a request, typed: the wire text is made only at the edge
    /// (`HelperProtocol.encode`), and read back with `decode(_:for:)`.
    public enum Reply: Sendable, Equatable {
        /// The summary (nil: the user has no record).
        case summary(RecordSummary?)
        case challenge([UInt8])
        /// VALIDATE answers (nil: the card has no access key).
        case access(AccessAnswers?)
        /// A verdict and the lock after it.
        case attempt(Attempt)
        /// The user's offline epoch: an offline pair made under an older one is void.
        case offline(epoch: Int64)

        /// Whether it is an accepted verdict.
        public var accepted: Bool {
            if case .attempt(let a) = self, case .accepted = a.verdict { return true }
            return false
        }

        /// What it says, for metrics and the log: the verdict (accepted, replayed,
        /// rejected, locked) or the read-only operation's name.
        public var result: String {
            switch self {
            case .summary: return Operation.summary.rawValue
            case .challenge: return Operation.challenge.rawValue
            case .access: return Operation.access.rawValue
            case .offline: return Operation.offline.rawValue
            case .attempt(let a):
                switch a.verdict {
                case .accepted: return "accepted"
                case .replayed: return "replayed"
                case .rejected: return "rejected"
                case .locked: return "locked"
                }
            }
        }
    }

    /// The wire text of `reply`.
    public static func encode(_ reply: Reply) -> String {
        switch reply {
        case .summary(let s): return encode(s)
        case .challenge(let c): return encode(challenge: c)
        case .access(let a): return encode(access: a)
        case .attempt(let a): return encode(a)
        case .offline(let epoch): return version + msg("\nepoch \(epoch)\n")
        }
    }

    /// Reads the answer to an `operation` request.
    public static func decode(_ text: String, for operation: Operation) throws(ParseError) -> Reply {
        switch operation {
        case .summary: return .summary(try decodeSummary(text))
        case .challenge: return .challenge(try decodeChallenge(text))
        case .access: return .access(try decodeAccess(text))
        case .code, .password, .tap, .enrollSelf, .confirmSelf, .passwordSelf: return .attempt(try decodeAttempt(text))
        case .offline:
            let lines = try body(text)
            guard lines.count == 1, lines[0].key == "epoch", let epoch = Int64(lines[0].value), epoch >= 0 else { throw ParseError("bad epoch") }
            return .offline(epoch: epoch)
        }
    }

    /// Runs `request` for `user` against `records`.
    public static func answer<R: RecordService>(_ request: Request, for user: UserName, by records: R,
                                                now: Int64) throws(RecordError) -> Reply {
        switch request {
        case .summary: return .summary(try records.summary(user, now: now))
        case .challenge: return .challenge(try records.issueChallenge(for: user, now: now))
        case .access(let id, let card, let ours):
            return .access(try records.accessAnswers(for: user, tokenID: id, cardChallenge: card, ourChallenge: ours, now: now))
        case .perform(let operation): return .attempt(try records.perform(operation, for: user, now: now))
        case .offline:
            // Offline logins are reported by the fleet client to the verifiers, and by
            // nothing else: a report a caller could hand in would be audit rows of its making.
            throw .verifier("offline reports go from the fleet client to the verifiers only")
        }
    }
}
