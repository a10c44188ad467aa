import OTPCore
import SmartCard
import TokenStore

/// The login: card tap, then typed code, then simple password, as the service allows.
///
/// It talks to the world only through `Prompter`, `CardReader`, `RecordService`, `Clock`
/// and `AuditLog`, so every branch runs in unit tests without PAM, pcscd or root. Every
/// verdict is reached inside one locked update of the record (`RecordService.perform`).
public struct LoginFlow {
    public var config: ModuleConfig
    public var records: any RecordService
    public var prompter: any Prompter
    public var reader: any CardReader
    public var clock: any Clock
    public var audit: any AuditLog
    /// PAM_AUTHTOK from an earlier module, for try_first_pass / use_first_pass.
    public var previousToken: String?

    public init(config: ModuleConfig, records: any RecordService, prompter: any Prompter, reader: any CardReader,
                clock: any Clock, audit: any AuditLog, previousToken: String? = nil) {
        self.config = config
        self.records = records
        self.prompter = prompter
        self.reader = reader
        self.clock = clock
        self.audit = audit
        self.previousToken = previousToken
    }

    /// Convenience for root processes: the store itself, with the config's policy.
    public init(config: ModuleConfig, store: any Store, prompter: any Prompter, reader: any CardReader,
                clock: any Clock, audit: any AuditLog, previousToken: String? = nil) {
        self.init(config: config, records: LocalRecords(store: store, policy: Policy(config)), prompter: prompter,
                  reader: reader, clock: clock, audit: audit, previousToken: previousToken)
    }

    /// Longest answer read from the conversation; anything longer is refused unparsed.
    public static let maxAnswer = 1024

    /// One login of `user` for `service`.
    public func authenticate(user rawUser: String, service: String) -> Outcome {
        var run = Run(flow: self, logUser: ConfigError.printable(rawUser), service: ConfigError.printable(service))
        return run.authenticate(rawUser)
    }
}

/// The state of one login.
struct Run {
    let flow: LoginFlow
    let logUser: String
    let service: String
    var pending: String?
    var record: UserRecord?

    init(flow: LoginFlow, logUser: String, service: String) {
        self.flow = flow
        self.logUser = logUser
        self.service = service
        pending = flow.previousToken
    }

    var config: ModuleConfig { flow.config }
    var prompter: any Prompter { flow.prompter }

    func log(_ method: String, _ result: AuditEvent.Result, _ reason: String) {
        flow.audit.record(AuditEvent(user: logUser, service: service, method: method, result: result, reason: reason))
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
        let record: UserRecord
        do {
            guard let r = try flow.records.summary(user) else {
                log("-", .skipped, config.nullok ? "no record (nullok)" : "no record")
                return config.nullok ? .ignore : .userUnknown("no smartotp record")
            }
            record = r
        } catch {
            log("-", .error, "\(error)")
            return .unavailable("\(error)")
        }
        self.record = record
        let now = flow.clock.now()
        if record.isLocked(deny: config.deny, unlockTime: config.unlockTime, now: now) {
            tellLocked(record, now: now)
            log("-", .locked, "\(record.failures) consecutive failures")
            return .locked
        }
        for method in config.methods {
            let step: Step
            switch method {
            case .card: step = tapStep(user, record)
            case .code: step = codeStep(user, record)
            case .password: step = passwordStep(user, record)
            }
            if case .done(let outcome) = step { return outcome }
        }
        log("-", .failure, "no method could be used")
        prompter.error("No way to authenticate is available for this account.")
        return .failure("no usable method")
    }

    func tellLocked(_ record: UserRecord, now: Int64) {
        let left = record.secondsUntilUnlock(unlockTime: config.unlockTime, now: now)
        prompter.error(left > 0 ? "Too many failed attempts: locked for \(left) more seconds." :
                        "Too many failed attempts: locked until an administrator unlocks you.")
    }

    /// Runs one operation and turns its verdict into the step's end.
    func verdict(_ operation: RecordOperation, _ method: Method, _ user: UserName, wrong: String, reason: String) -> Step {
        let result: RecordVerdict
        do {
            result = try flow.records.perform(operation, for: user, now: flow.clock.now(), countFailure: true)
        } catch {
            log(method.rawValue, .error, "\(error)")
            return .done(.unavailable("\(error)"))
        }
        switch result {
        case .accepted(let detail):
            log(method.rawValue, .success, detail == "password" ? "simple password" : detail == "recovery" ? "recovery code" : "token \(detail)")
            if detail == "recovery" { prompter.info("Recovery code accepted; it cannot be used again.") }
            return .done(.success(method))
        case .replayed(let id):
            prompter.error("That code was already used. Wait for the next one.")
            log(method.rawValue, .failure, "replayed code for token \(id)")
            warnIfNowLocked()
            return .done(.failure("replayed code"))
        case .rejected:
            prompter.error(wrong)
            log(method.rawValue, .failure, reason)
            warnIfNowLocked()
            return .done(.failure(reason))
        case .locked:
            if let record { tellLocked(record, now: flow.clock.now()) }
            log(method.rawValue, .locked, "locked during the attempt")
            return .done(.locked)
        }
    }

    /// Tells the user when this failure was the one that locked the account.
    func warnIfNowLocked() {
        guard let record, config.deny > 0, record.failures >= config.deny - 1 else { return }
        prompter.error("Too many failed attempts: this account is now locked.")
    }

    // MARK: - Card

    func tapStep(_ user: UserName, _ record: UserRecord) -> Step {
        let candidates = record.tokens.compactMap { t -> CardCandidate? in
            guard t.kind == .card, let name = t.credentialName else { return nil }
            return CardCandidate(tokenID: t.id, deviceID: t.deviceID, credentialName: name, accessKey: t.accessKey, touch: t.touch)
        }
        guard !candidates.isEmpty else { return .next }
        guard flow.reader.readerAvailable(filter: config.reader) else {
            log("card", .skipped, "no reader or pcscd not running")
            return .next
        }
        guard let challenge = SecureRandom.bytes(8) else { return .done(.serviceError("no random bytes")) }
        prompter.instruct("Tap your card on the reader (\(config.timeout) s)...")
        let result = flow.reader.tap(candidates: candidates, challenge: challenge, filter: config.reader,
                                     timeoutSeconds: config.timeout) { notice in
            switch notice {
            case .secondsLeft(let s): prompter.info("Waiting for your card: \(s) s left...")
            case .touchRequired: prompter.instruct("Touch your key...")
            case .wrongCard: prompter.error("This is not your enrolled card.")
            }
        }
        switch result {
        case .response(let tokenID, let mac):
            return verdict(.tap(tokenID: tokenID, challenge: challenge, response: mac), .card, user,
                           wrong: "The card's answer is wrong.", reason: "wrong response from card \(tokenID)")
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

    /// Whether an empty answer at the code prompt may move on to the simple password.
    func offersPassword(_ record: UserRecord) -> Bool {
        let codeIndex = config.methods.firstIndex(of: .code) ?? 0
        return record.passwordHash != nil && (config.methods.firstIndex(of: .password).map { $0 > codeIndex } ?? false)
    }

    func looksLikeCode(_ s: String, _ record: UserRecord) -> Bool {
        record.tokens.contains { OTP.normalise(s, digits: $0.parameters.digits) != nil } || RecoveryCode.normalise(s) != nil
    }

    mutating func codeStep(_ user: UserName, _ record: UserRecord) -> Step {
        guard !record.tokens.isEmpty || !record.recoveryCodes.isEmpty else { return .next }
        let toPassword = offersPassword(record)
        let typed: String
        if let token = pending, looksLikeCode(token, record) {
            typed = token
            pending = nil
        } else if config.useFirstPass || (pending != nil && toPassword) {
            // An earlier module's token that is not a code goes to the password step.
            return .next
        } else {
            guard let answer = prompter.askSecret(toPassword ? "One-time code (Enter for your simple password): " : "One-time code: ") else {
                log("code", .error, "conversation failed")
                return .done(.conversationError)
            }
            typed = answer
        }
        if typed.isEmpty && toPassword { return .next }
        if typed.utf8.count > LoginFlow.maxAnswer {
            return verdict(.code(""), .code, user, wrong: "Wrong code.", reason: "answer too long")
        }
        return verdict(.code(typed), .code, user, wrong: "Wrong code.", reason: "wrong code")
    }

    // MARK: - Simple password

    mutating func passwordStep(_ user: UserName, _ record: UserRecord) -> Step {
        guard record.passwordHash != nil else { return .next }
        if let token = pending {
            pending = nil
            if config.useFirstPass {
                return verdict(.password(token), .password, user, wrong: "Wrong password.",
                               reason: "PAM_AUTHTOK is not the simple password (use_first_pass)")
            }
            // try_first_pass: an earlier module's password that is not ours is not the
            // user's failure: try it uncounted, then ask.
            if let r = try? flow.records.perform(.password(token), for: user, now: flow.clock.now(), countFailure: false),
               case .accepted = r {
                log("password", .success, "simple password (PAM_AUTHTOK)")
                return .done(.success(.password))
            }
        }
        if config.useFirstPass {
            log("password", .failure, "no PAM_AUTHTOK from an earlier module (use_first_pass)")
            return .done(.failure("no PAM_AUTHTOK from an earlier module (use_first_pass)"))
        }
        guard let typed = prompter.askSecret("Simple password: ") else {
            log("password", .error, "conversation failed")
            return .done(.conversationError)
        }
        if typed.utf8.count > LoginFlow.maxAnswer {
            return verdict(.password(""), .password, user, wrong: "Wrong password.", reason: "answer too long")
        }
        return verdict(.password(typed), .password, user, wrong: "Wrong password.", reason: "wrong simple password")
    }
}
