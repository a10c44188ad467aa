import OTPCore
import SmartCard
import TokenStore
import Verifier

/// The login: card tap, then typed code, then simple password, as the service allows.
///
/// It talks to the world only through `Prompter`, `CardReader`, `RecordService`, `Clock`
/// and `AuditLog`, so every branch runs in unit tests without PAM, pcscd or root. Every
/// verdict is reached inside one locked update of the record (`RecordService.perform`).
///
/// Generic over its ports rather than holding existentials: the same code builds in
/// Embedded Swift (no `any` of these protocols there) and every call is direct.
public struct LoginFlow<Records: RecordService, Asker: Prompter, Reader: CardReader, Time: Clock, Audit: AuditLog> {
    public var config: ModuleConfig
    public var records: Records
    public var prompter: Asker
    public var reader: Reader
    public var clock: Time
    public var audit: Audit
    /// PAM_AUTHTOK from an earlier module, for try_first_pass / use_first_pass. It is
    /// only ever tried as a one-time code: never as the simple password, which would
    /// merge the two factors into one.
    public var previousToken: String?
    /// PAM_RHOST, for the audit line.
    public var remoteHost: String = ""
    /// Whether the application is a window (a graphical locker or greeter): the tap is
    /// then asked for in one dialog with the code (`prompts=`, resolved by the module).
    public var window = false

    public init(config: ModuleConfig, records: Records, prompter: Asker, reader: Reader,
                clock: Time, audit: Audit, previousToken: String? = nil) {
        self.config = config
        self.records = records
        self.prompter = prompter
        self.reader = reader
        self.clock = clock
        self.audit = audit
        self.previousToken = previousToken
    }

    /// One login of `user` for `service`.
    public consuming func authenticate(user rawUser: String, service: String) -> Outcome {
        var run = LoginAttempt(flow: self, logUser: ConfigError.printable(rawUser), service: ConfigError.printable(service))
        return run.authenticate(rawUser)
    }
}

/// The state of one login.
struct LoginAttempt<Records: RecordService, Asker: Prompter, Reader: CardReader, Time: Clock, Audit: AuditLog> {
    let flow: LoginFlow<Records, Asker, Reader, Time, Audit>
    let logUser: String
    let service: String
    var pending: String?
    /// What the user typed at the window's tap prompt instead of tapping: tried as the
    /// typed code, without asking again.
    var typedAtTap: String?
    /// A message for a window that goes out with the next prompt, in the same dialog.
    var noteForPrompt: String?

    init(flow: LoginFlow<Records, Asker, Reader, Time, Audit>, logUser: String, service: String) {
        self.flow = flow
        self.logUser = logUser
        self.service = service
        pending = flow.previousToken
    }

    var config: ModuleConfig { flow.config }
    var prompter: Asker { flow.prompter }

    func log(_ method: String, _ result: AuditEvent.Result, _ reason: String) {
        flow.audit.record(AuditEvent(user: logUser, service: service, method: method, result: result, reason: reason,
                                     rhost: ConfigError.printable(flow.remoteHost)))
    }

    /// One step of the login for `debug` (LOG_DEBUG): what was shown, tried and decided.
    /// Callers build the text only when `config.debug` is on; it never holds what the user
    /// typed or a secret.
    @inline(never)
    func trace(_ text: String) {
        flow.audit.debug(msg("user=\(logUser) service=\(service): \(text)"))
    }

    /// Asks with echo off, after noting the prompt for `debug`.
    mutating func ask(_ method: Method, _ prompt: String) -> String? {
        if let note = noteForPrompt {
            noteForPrompt = nil
            if config.debug { trace(msg("\(method.rawValue): prompt shown: \"\(note)\" \"\(prompt)\"")) }
            return prompter.askSecret(prompt, after: note)
        }
        if config.debug { trace(msg("\(method.rawValue): prompt shown: \"\(prompt)\"")) }
        return prompter.askSecret(prompt)
    }

    /// Adds a line to the message that goes out with the next prompt (a window's dialog).
    mutating func addNote(_ line: String) {
        noteForPrompt = noteForPrompt.map { $0 + "\n" + line } ?? line
    }

    /// Whether `later` is offered after `earlier` in the service's methods.
    func offered(_ later: Method, after earlier: Method) -> Bool {
        let earlierIndex = config.methods.firstIndex(of: earlier) ?? 0
        return config.methods.firstIndex(of: later).map { $0 > earlierIndex } ?? false
    }

    enum Step {
        case next
        case done(Outcome)
    }

    mutating func authenticate(_ rawUser: String) -> Outcome {
        let user: UserName
        do { user = try UserName(rawUser) } catch {
            log("-", .error, error.description)
            return .userUnknown(error.description)
        }
        let summary: RecordSummary
        do {
            guard let s = try flow.records.summary(user, now: flow.clock.now()) else {
                log("-", .skipped, config.nullok ? "no record (nullok)" : "no record")
                return config.nullok ? .ignore : .userUnknown("no smartotp record")
            }
            summary = s
        } catch {
            log("-", .error, error.description)
            return .unavailable(error.description)
        }
        if config.debug { trace(Self.describe(summary)) }
        if summary.offline {
            log("-", .skipped, "no verifier answered: the host's offline pair decides (a tap only)")
            prompter.info("The verifiers cannot be reached: only your card can log you in now.")
        }
        if summary.lock.isLocked {
            tellLocked(summary.lock)
            log("-", .locked, msg("\(summary.failures) failures"))
            return .locked
        }
        if flow.window && summary.failures > 0 {
            // A greeter starts the next try at once, and its first message takes the place
            // of the last one's "Wrong code.": the count says it instead.
            addNote(summary.failures == 1 ? "1 failed attempt since your last login."
                : msg("\(summary.failures) failed attempts since your last login."))
        }
        for method in config.methods {
            if config.debug { trace(msg("trying \(method.rawValue)")) }
            let step: Step
            switch method {
            case .card: step = tapStep(user, summary)
            case .code: step = codeStep(user, summary)
            case .password: step = passwordStep(user, summary)
            }
            if case .done(let outcome) = step { return outcome }
        }
        log("-", .failure, "no method could be used")
        prompter.error("No way to authenticate is available for this account.")
        return .failure("no usable method")
    }

    /// The record as `debug` shows it: what can be used, never a secret.
    static func describe(_ s: RecordSummary) -> String {
        msg("record: \(s.cards.count) card(s), \(s.codeDigits.count) code token(s), \(s.recoveryCodes) recovery code(s), simple password \(s.hasPassword ? "yes" : "no"), \(s.failures) failure(s) counted")
    }

    func tellLocked(_ lock: LockState) {
        switch lock {
        case .lockedUntil(let until):
            let left = max(1, until - flow.clock.now())
            prompter.error(msg("Too many failed attempts: locked for \(left) more seconds."))
        case .lockedForGood:
            prompter.error("Too many failed attempts: locked until an administrator unlocks you.")
        case .open:
            break
        }
    }

    /// Runs one operation and turns its verdict into the step's end.
    func verdict(_ operation: RecordOperation, _ method: Method, _ user: UserName, wrong: String, reason: String) -> Step {
        let attempt: Attempt
        do {
            attempt = try flow.records.perform(operation, for: user, now: flow.clock.now())
        } catch {
            log(method.rawValue, .error, error.description)
            return .done(.unavailable(error.description))
        }
        if config.debug { trace(msg("\(method.rawValue): verdict \(Self.describe(attempt.verdict)), lock \(attempt.lock.isLocked ? "on" : "off") after it")) }
        switch attempt.verdict {
        case .accepted(let credential):
            log(method.rawValue, .success, credential.description)
            if credential == .recoveryCode { prompter.info("Recovery code accepted; it cannot be used again.") }
            return .done(.success(method))
        case .replayed(let id):
            prompter.error("That code was already used. Wait for the next one.")
            log(method.rawValue, .failure, msg("replayed code for token \(id)"))
            warnIfNowLocked(attempt.lock)
            return .done(.failure("replayed code"))
        case .rejected:
            prompter.error(wrong)
            log(method.rawValue, .failure, reason)
            warnIfNowLocked(attempt.lock)
            return .done(.failure(reason))
        case .locked:
            tellLocked(attempt.lock)
            log(method.rawValue, .locked, "locked during the attempt")
            return .done(.locked)
        }
    }

    static func describe(_ verdict: RecordVerdict) -> String {
        switch verdict {
        case .accepted(let credential): return "accepted (" + credential.description + ")"
        case .replayed(let id): return "replayed (token " + id + ")"
        case .rejected: return "rejected"
        case .locked: return "locked"
        }
    }

    /// Tells the user when this failure was the one that locked the account.
    func warnIfNowLocked(_ lock: LockState) {
        guard lock.isLocked else { return }
        prompter.error("Too many failed attempts: this account is now locked.")
    }

    // MARK: - Card

    mutating func tapStep(_ user: UserName, _ summary: RecordSummary) -> Step {
        guard !summary.cards.isEmpty else { return .next }
        guard flow.reader.readerAvailable(filter: config.reader) else {
            log("card", .skipped, "no reader or pcscd not running")
            return .next
        }
        if flow.window {
            // A window holds a lone message up until it is clicked away, and the module
            // cannot take it down when the card comes: so one dialog asks for both, and
            // the tap is read when the user presses Enter.
            let codeNext = summary.acceptsCodes && offered(.code, after: .card)
            addNote(codeNext ? "Hold your card on the reader and press Enter,\nor type your one-time code." : "Hold your card on the reader and press Enter.")
            guard let answer = ask(.card, codeNext ? "Code:" : "Card:") else {
                log("card", .error, "conversation failed")
                return .done(.conversationError)
            }
            // Typed text is the code where one is offered; at "Card:" it is only Enter.
            if !answer.isEmpty && codeNext {
                typedAtTap = answer
                log("card", .skipped, "a code was typed instead of a tap")
                return .next
            }
        } else {
            prompter.instruct(msg("Tap your card on the reader (\(config.timeout) s)..."))
        }
        let records = flow.records
        let clock = flow.clock
        var verifierError: String?
        let authority = TapAuthority(
            challenge: { _ in
                do throws(RecordError) { return try records.issueChallenge(for: user, now: clock.now()) } catch {
                    verifierError = error.description
                    return nil
                }
            },
            access: { tokenID, cardChallenge, ours in
                try? records.accessAnswers(for: user, tokenID: tokenID, cardChallenge: cardChallenge, ourChallenge: ours, now: clock.now())
            })
        let window = flow.window
        // In a window the user pressed Enter with the card already held to the reader: a
        // short wait for it, not the whole timeout with nothing on the screen.
        let wait = window ? min(config.timeout, 5) : config.timeout
        let result = flow.reader.tap(cards: summary.cards, filter: config.reader, timeoutSeconds: wait,
                                     authority: authority) { notice in
            switch notice {
            case .secondsLeft(let s):
                // In a window each reminder would be one more dialog to click away.
                if !window { prompter.info(msg("Waiting for your card: \(s) s left...")) }
            case .touchRequired: prompter.instruct("Touch your key...")
            case .wrongCard: prompter.error("This is not your enrolled card.")
            }
        }
        if let verifierError {
            log("card", .error, verifierError)
            return .done(.unavailable(verifierError))
        }
        switch result {
        case .response(let tokenID, let challenge, let mac):
            return verdict(.tap(tokenID: tokenID, challenge: challenge, response: mac), .card, user,
                           wrong: "The card's answer is wrong.", reason: msg("wrong response from card \(tokenID)"))
        case .unavailable(let e):
            log("card", .skipped, e.description)
            return .next
        case .timeout:
            if window { addNote("No card was on the reader.") } else { prompter.info("No card was presented.") }
            log("card", .skipped, msg("no tap within \(wait) s"))
            return .next
        case .failed(let e):
            prompter.error(msg("The card could not be used: \(e.description)."))
            log("card", .skipped, e.description)
            return .next
        }
    }

    // MARK: - Typed code

    /// Whether an empty answer at the code prompt may move on to the simple password.
    func offersPassword(_ summary: RecordSummary) -> Bool {
        summary.hasPassword && !config.useFirstPass && offered(.password, after: .code)
    }

    func looksLikeCode(_ s: String, _ summary: RecordSummary) -> Bool {
        summary.codeDigits.contains { OTP.normalise(s, digits: $0) != nil } || RecoveryCode.normalise(s) != nil
    }

    mutating func codeStep(_ user: UserName, _ summary: RecordSummary) -> Step {
        guard summary.acceptsCodes else { return .next }
        let toPassword = offersPassword(summary)
        let typed: String
        let earlier = pending
        pending = nil
        if let atTap = typedAtTap {
            // Typed at the window's tap prompt: that was the code.
            typedAtTap = nil
            typed = atTap
        } else if let earlier, looksLikeCode(earlier, summary) {
            // try_first_pass / use_first_pass: an earlier module's token that has the shape
            // of a code is tried as one, and counted like any typed code.
            typed = earlier
        } else if config.useFirstPass {
            log("code", .failure, "PAM_AUTHTOK from an earlier module is not a one-time code (use_first_pass)")
            return .next
        } else {
            let prompt: String
            if flow.window {
                // A window's field label stays short; the hint goes in the message above it.
                if toPassword { addNote("No code? Press Enter for your simple password.") }
                prompt = "One-time code:"
            } else {
                prompt = toPassword ? "One-time code (Enter for your simple password): " : "One-time code: "
            }
            guard let answer = ask(.code, prompt) else {
                log("code", .error, "conversation failed")
                return .done(.conversationError)
            }
            typed = answer
        }
        if typed.isEmpty && toPassword { return .next }
        if typed.utf8.count > AnswerLimit.bytes {
            return verdict(.code(""), .code, user, wrong: "Wrong code.", reason: "answer too long")
        }
        return verdict(.code(typed), .code, user, wrong: "Wrong code.", reason: "wrong code")
    }

    // MARK: - Simple password

    /// The simple password is only ever typed at its own prompt: a password from an
    /// earlier module is never taken for it (each factor stays one factor).
    mutating func passwordStep(_ user: UserName, _ summary: RecordSummary) -> Step {
        guard summary.hasPassword else { return .next }
        if config.useFirstPass {
            log("password", .skipped, "use_first_pass: the simple password is never taken from an earlier module")
            return .next
        }
        guard let typed = ask(.password, "Simple password: ") else {
            log("password", .error, "conversation failed")
            return .done(.conversationError)
        }
        if typed.utf8.count > AnswerLimit.bytes {
            return verdict(.password(""), .password, user, wrong: "Wrong password.", reason: "answer too long")
        }
        return verdict(.password(typed), .password, user, wrong: "Wrong password.", reason: "wrong simple password")
    }
}
