import OTPCore
import SmartCard
import TokenStore

/// The login: card tap, then typed code, then simple password, as the service allows.
///
/// It talks to the world only through `Prompter`, `CardReader`, `Store`, `Clock` and
/// `AuditLog`, so every branch runs in unit tests without PAM, pcscd or root.
public struct LoginFlow {
    public var config: ModuleConfig
    public var store: any Store
    public var prompter: any Prompter
    public var reader: any CardReader
    public var clock: any Clock
    public var audit: any AuditLog
    /// PAM_AUTHTOK from an earlier module, for try_first_pass / use_first_pass.
    public var previousToken: String?

    public init(config: ModuleConfig, store: any Store, prompter: any Prompter, reader: any CardReader,
                clock: any Clock, audit: any AuditLog, previousToken: String? = nil) {
        self.config = config
        self.store = store
        self.prompter = prompter
        self.reader = reader
        self.clock = clock
        self.audit = audit
        self.previousToken = previousToken
    }

    /// Longest answer read from the conversation; anything longer is refused unparsed.
    static let maxAnswer = 1024

    public func authenticate(user rawUser: String, service: String) -> Outcome {
        let service = ConfigError.printable(service)
        let logUser = ConfigError.printable(rawUser)
        func log(_ method: String, _ result: AuditEvent.Result, _ reason: String) {
            audit.record(AuditEvent(user: logUser, service: service, method: method, result: result, reason: reason))
        }
        let user: UserName
        do { user = try UserName(rawUser) } catch {
            log("-", .error, error.description)
            return .userUnknown(error.description)
        }
        let record: UserRecord
        do {
            guard let r = try store.read(user) else {
                log("-", .skipped, config.nullok ? "no record (nullok)" : "no record")
                return config.nullok ? .ignore : .userUnknown("no smartotp record")
            }
            record = r
        } catch {
            log("-", .error, error.description)
            return .unavailable(error.description)
        }
        let now = clock.now()
        if record.isLocked(deny: config.deny, unlockTime: config.unlockTime, now: now) {
            let left = record.secondsUntilUnlock(unlockTime: config.unlockTime, now: now)
            prompter.error(left > 0 ? "Too many failed attempts: locked for \(left) more seconds." :
                            "Too many failed attempts: locked until an administrator unlocks you.")
            log("-", .locked, "\(record.failures) consecutive failures")
            return .locked
        }

        var pending = previousToken
        for method in config.methods {
            let step: StepResult
            switch method {
            case .card: step = tapStep(record, user: user, log: log)
            case .code: step = codeStep(record, user: user, pending: &pending, log: log)
            case .password: step = passwordStep(record, user: user, pending: &pending, log: log)
            }
            switch step {
            case .next: continue
            case .done(let outcome): return outcome
            }
        }
        log("-", .failure, "no method could be used")
        prompter.error("No way to authenticate is available for this account.")
        return .failure("no usable method")
    }

    enum StepResult {
        case next
        case done(Outcome)
    }

    // MARK: - Card

    func tapStep(_ record: UserRecord, user: UserName, log: (String, AuditEvent.Result, String) -> Void) -> StepResult {
        let cards = record.tokens.filter { $0.kind == .card }
        guard !cards.isEmpty else { return .next }
        guard reader.readerAvailable(filter: config.reader) else {
            log("card", .skipped, "no reader or pcscd not running")
            return .next
        }
        guard let challenge = SecureRandom.bytes(8) else { return .done(.serviceError("no random bytes")) }
        let candidates = cards.compactMap { t -> CardCandidate? in
            guard let name = t.credentialName else { return nil }
            return CardCandidate(tokenID: t.id, deviceID: t.deviceID, credentialName: name, accessKey: t.accessKey, touch: t.touch)
        }
        prompter.info("Tap your card on the reader (\(config.timeout) s)...")
        let result = reader.tap(candidates: candidates, challenge: challenge, filter: config.reader,
                                timeoutSeconds: config.timeout) { notice in
            prompter.info(notice)
        }
        switch result {
        case .response(let tokenID, let mac):
            guard let token = cards.first(where: { $0.id == tokenID }),
                  ChallengeResponse.verify(response: mac, secret: token.secret, challenge: challenge, algorithm: token.parameters.algorithm) else {
                prompter.error("The card's answer is wrong.")
                return .done(fail(user, method: "card", reason: "wrong response from card \(tokenID)", log: log))
            }
            return .done(succeed(user, method: .card, tokenID: tokenID, log: log))
        case .unavailable(let e):
            log("card", .skipped, e.description)
            return .next
        case .timeout:
            prompter.info("No card was presented.")
            log("card", .skipped, "no tap within \(config.timeout) s")
            return .next
        case .failed(let e):
            prompter.error("The card could not be used: \(e.description).")
            log("card", .skipped, e.description)
            return .next
        }
    }

    // MARK: - Typed code

    func codeStep(_ record: UserRecord, user: UserName, pending: inout String?,
                  log: (String, AuditEvent.Result, String) -> Void) -> StepResult {
        guard !record.tokens.isEmpty || !record.recoveryCodes.isEmpty else { return .next }
        // An empty answer moves on to the simple password when it is offered after codes.
        let codeIndex = config.methods.firstIndex(of: .code) ?? 0
        let offersPassword = record.passwordHash != nil && (config.methods.firstIndex(of: .password).map { $0 > codeIndex } ?? false)
        var typed: String
        if let token = pending, looksLikeCodeOrRecovery(token, record) {
            typed = token
            pending = nil
        } else if config.useFirstPass || (pending != nil && offersPassword) {
            // An earlier module's token that is not a code goes to the password step.
            return .next
        } else {
            guard let answer = prompter.askSecret(offersPassword ? "One-time code (Enter for your simple password): " : "One-time code: ") else {
                log("code", .error, "conversation failed")
                return .done(.conversationError)
            }
            typed = answer
        }
        if typed.isEmpty && offersPassword { return .next }
        guard typed.utf8.count <= Self.maxAnswer else {
            return .done(fail(user, method: "code", reason: "answer too long", log: log))
        }
        let now = clock.now()
        let check = CodeCheck(skew: config.skew, window: config.window)
        do {
            let result = try store.update(user) { (r: inout UserRecord?, changed: inout Bool) -> CodeCheck.Result in
                guard var current = r else { return .rejected }
                var outcome = check.apply(typed, to: &current, now: now)
                if case .rejected = outcome, RecoveryCode.consume(typed, in: &current) {
                    outcome = .accepted(tokenID: "recovery", counter: 0)
                }
                switch outcome {
                case .accepted:
                    current.failures = 0
                case .replayed, .rejected:
                    current.failures += 1
                    current.lastFailure = now
                }
                r = current
                changed = true
                return outcome
            }
            switch result {
            case .accepted(let tokenID, _):
                log("code", .success, "token \(tokenID)")
                if tokenID == "recovery" { prompter.info("Recovery code accepted; it cannot be used again.") }
                return .done(.success(.code))
            case .replayed(let tokenID):
                prompter.error("That code was already used. Wait for the next one.")
                log("code", .failure, "replayed code for token \(tokenID)")
                return .done(lockedOrFailed(user, reason: "replayed code"))
            case .rejected:
                prompter.error("Wrong code.")
                log("code", .failure, "wrong code")
                return .done(lockedOrFailed(user, reason: "wrong code"))
            }
        } catch {
            log("code", .error, "\(error)")
            return .done(.unavailable("\(error)"))
        }
    }

    func looksLikeCodeOrRecovery(_ s: String, _ record: UserRecord) -> Bool {
        record.tokens.contains { OTP.normalise(s, digits: $0.parameters.digits) != nil } || RecoveryCode.normalise(s) != nil
    }

    // MARK: - Simple password

    func passwordStep(_ record: UserRecord, user: UserName, pending: inout String?,
                      log: (String, AuditEvent.Result, String) -> Void) -> StepResult {
        guard let hash = record.passwordHash else { return .next }
        if let token = pending {
            pending = nil
            if token.utf8.count <= Self.maxAnswer, PasswordHash.verify(token, hash: hash) {
                return .done(succeed(user, method: .password, tokenID: nil, log: log))
            }
            // try_first_pass: the earlier module's password was not ours; ask (uncounted).
            if config.useFirstPass {
                return .done(fail(user, method: "password", reason: "PAM_AUTHTOK is not the simple password (use_first_pass)", log: log))
            }
        }
        let typed: String
        if config.useFirstPass {
            return .done(fail(user, method: "password", reason: "no PAM_AUTHTOK from an earlier module (use_first_pass)", log: log))
        } else {
            guard let answer = prompter.askSecret("Simple password: ") else {
                log("password", .error, "conversation failed")
                return .done(.conversationError)
            }
            typed = answer
        }
        guard typed.utf8.count <= Self.maxAnswer, PasswordHash.verify(typed, hash: hash) else {
            prompter.error("Wrong password.")
            return .done(fail(user, method: "password", reason: "wrong simple password", log: log))
        }
        return .done(succeed(user, method: .password, tokenID: nil, log: log))
    }

    // MARK: - Bookkeeping

    func succeed(_ user: UserName, method: Method, tokenID: String?, log: (String, AuditEvent.Result, String) -> Void) -> Outcome {
        let now = clock.now()
        do {
            try store.update(user) { (r: inout UserRecord?, changed: inout Bool) in
                guard r != nil else { return }
                r?.failures = 0
                if let tokenID, let i = r?.tokens.firstIndex(where: { $0.id == tokenID }) { r?.tokens[i].lastUsedTime = now }
                changed = true
            }
        } catch {
            log(method.rawValue, .error, "\(error)")
            return .unavailable("\(error)")
        }
        log(method.rawValue, .success, tokenID.map { "token \($0)" } ?? "simple password")
        return .success(method)
    }

    func fail(_ user: UserName, method: String, reason: String, log: (String, AuditEvent.Result, String) -> Void) -> Outcome {
        let now = clock.now()
        do {
            try store.update(user) { (r: inout UserRecord?, changed: inout Bool) in
                guard r != nil else { return }
                r?.failures += 1
                r?.lastFailure = now
                changed = true
            }
        } catch {
            log(method, .error, "\(error)")
            return .unavailable("\(error)")
        }
        log(method, .failure, reason)
        return lockedOrFailed(user, reason: reason)
    }

    /// After a counted failure: tell the user when this one locked the account.
    func lockedOrFailed(_ user: UserName, reason: String) -> Outcome {
        if let r = try? store.read(user), r.isLocked(deny: config.deny, unlockTime: config.unlockTime, now: clock.now()) {
            prompter.error("Too many failed attempts: this account is now locked.")
        }
        return .failure(reason)
    }
}
