import Logging
import Metrics
import OTPCore
import SmartOTPAdmin
import SmartOTPFleet
import SmartOTPVault
import TokenStore
import Verifier

/// What the audit trail says of a request: the credential kind, the result, the reason.
/// Never a code, a password or a challenge.
public struct AuditFacts: Sendable, Equatable {
    public var operation: String
    public var credential: String
    public var result: String
    public var reason: String

    public init(operation: String, credential: String, result: String, reason: String) {
        self.operation = operation
        self.credential = credential
        self.result = result
        self.reason = reason
    }

    /// What a verdict's audit row says.
    public static func of(_ request: HelperProtocol.Request, _ reply: HelperProtocol.Reply) -> AuditFacts {
        var credential = ""
        switch request {
        case .perform(.tap), .access, .challenge: credential = "tap"
        case .perform(.password): credential = "password"
        case .perform(.enrollSelf): credential = "invitation"
        case .perform(.confirmSelf), .perform(.passwordSelf): credential = "code"
        case .perform(.code): credential = "code"
        case .summary, .offline: break
        }
        var reason = ""
        switch reply {
        case .attempt(let a):
            switch a.verdict {
            case .accepted(.recoveryCode): credential = "recovery"; reason = "a recovery code"
            case .accepted(.tempCode): credential = "temporary"; reason = "a temporary code"
            case .accepted(.token(let id)): reason = "token \(id)"
            case .accepted(.password): reason = "the simple password"
            case .replayed(let id): reason = "token \(id): a code already used"
            case .rejected: reason = a.lock.isLocked ? "wrong; the user is now locked" : "wrong"
            case .locked: reason = "the user is locked"
            }
        case .access(let answers): reason = answers == nil ? "no issued challenge, or no access key" : "answered an issued challenge"
        case .summary(let s): reason = s == nil ? "not enrolled" : ""
        case .challenge: reason = "issued"
        case .offline(let epoch): reason = "offline epoch \(epoch)"
        }
        return AuditFacts(operation: request.operation.rawValue, credential: credential, result: reply.result, reason: reason)
    }
}

/// Ties a request id to what was asked with it: a keyed hash (under the audit key, which
/// never enters the database) of the host certificate's serial, the operation and the
/// body. The body holds the code or password, so a plain hash kept in the row would be a
/// password hash a database reader could guess at.
public struct RequestBinder: Sendable {
    let audit: AuditChain

    public init(audit: AuditChain) { self.audit = audit }

    public func binding(serial: String, operation: HelperProtocol.Operation, body: [UInt8]) -> String {
        audit.tag(label: "smartotp request binding 1", parts: [Array(serial.utf8), Array(operation.rawValue.utf8), body])
    }
}

/// What a verdict's commit came to.
enum VerdictOutcome: Sendable {
    /// The decision, whether the user has a record, and for an accepted tap from an
    /// `offline=tap` host its offline stock (`OfflineWire`'s lines).
    case decided(FleetDecision, hadRecord: Bool, offline: String)
    /// The verdict already committed for this request id: answered again, not counted.
    case repeated(Attempt)
    case refused(SealError)
}

extension VerifierService {
    /// The handler of the route the middleware chose.
    func handle(_ context: inout RequestContext) async -> ServiceResponse {
        guard let route = context.route, let requester = context.requester else { return ServiceResponse(404, "no such path\n") }
        let request = context.request
        let started = ContinuousClock.now
        defer {
            let elapsed = ContinuousClock.now - started
            Metrics.Timer(label: ServiceMetrics.latency).recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }
        do {
            switch route {
            case .health:
                try await withDeadline(deadline) { [ledger] in try await ledger.check() }
                return ServiceResponse(200, "ok\n")
            case .verify(let op, let user):
                return try await verify(op, user, body: request.body, by: requester)
            case .join, .renew:
                let service = self
                let body = request.body, uri = request.uri
                return try await withDeadline(adminDeadline) { try await service.hostCertificate(route, uri: uri, body: body, by: requester) }
            case .users, .show, .change, .audit, .revocations, .revoke, .hostAdd, .hosts:
                let admin = self
                let uri = request.uri, body = request.body
                return try await withDeadline(adminDeadline) { try await admin.administer(route, uri: uri, body: body, by: requester) }
            }
        } catch let refused as RecordRefused {
            logger.critical("record refused", metadata: ["peer": "\(requester)", "path": "\(request.uri)", "why": "\(refused.why)"])
            Counter(label: ServiceMetrics.sealRefusals).increment()
            return ServiceResponse(422, "\(refused)\n")
        } catch let refusal as RecordError {
            // The record logic refused (a challenge for a user without a card, …): the
            // request's fault, not the database's.
            logger.notice("request refused", metadata: ["peer": "\(requester)", "path": "\(request.uri)", "why": "\(refusal)"])
            return ServiceResponse(422, "\(refusal)\n")
        } catch let failure as AdminChange.Failure {
            return ServiceResponse(422, "\(failure)\n")
        } catch {
            Counter(label: ServiceMetrics.databaseErrors).increment()
            logger.error("request failed", metadata: ["peer": "\(requester)", "path": "\(request.uri)", "error": "\(error)"])
            return ServiceResponse(503, "the verifier cannot answer now\n")
        }
    }

    /// Verdicts that hash (a simple password, a code shaped like a recovery code: one
    /// yescrypt per stored hash, tens of milliseconds each, with the row in hand).
    static func hashes(_ request: HelperProtocol.Request) -> Bool {
        switch request {
        case .perform(.password), .perform(.enrollSelf), .perform(.passwordSelf): return true
        case .perform(.code(let c)): return RecoveryCode.normalise(c) != nil
        default: return false
        }
    }

    /// `POST /v1/verify/OPERATION/USER` from a host: the request read from its body, its
    /// budgets reserved, decided on the user's row in one commit, the typed reply encoded.
    func verify(_ op: HelperProtocol.Operation, _ user: UserName, body: [UInt8], by requester: Requester) async throws -> ServiceResponse {
        let request: HelperProtocol.Request
        do throws(HelperProtocol.ParseError) { request = try HelperProtocol.request(op, lines: HelperProtocol.lines(body)) } catch {
            return ServiceResponse(400, error.description + "\n")
        }
        // Every operation costs the host a request (an offline report a request a line): a
        // stolen certificate cannot read or write records without end.
        var cost = 1
        if case .offline(let report) = request { cost = max(1, report.count) }
        for _ in 0..<cost {
            guard try await requests.reserve(requester.serial) != nil else {
                return overBudget("requests", requester, user, op, "this host has made too many requests; try later\n")
            }
        }
        // A host out of its scope learns nothing and changes nothing: 403, audited in chain
        // 0, counted against no user.
        if let why = scopes.refusal(host: requester.name, user: user.value) {
            Counter(label: ServiceMetrics.outOfScope).increment()
            logger.warning("host out of scope; refused", metadata: ["host": "\(requester)", "user": "\(user.value)", "operation": "\(op.rawValue)", "why": "\(why)"])
            let ledger = self.ledger
            _ = try await withDeadline(deadline) {
                try await ledger.commit(.fleet) { state in
                    state.audit(AuditFacts(operation: op.rawValue, credential: "", result: "out-of-scope", reason: why), by: requester, about: user)
                }
            }
            return ServiceResponse(403, "this host may not ask about \(user.value) (smartotpd.conf scope)\n")
        }
        // Past its failure budget a host gets no more verdicts (and its failures no longer
        // count against users) until the window moves on: a stolen host certificate locks
        // at most budget ÷ deny users a window. A unit is reserved now and given back when
        // the verdict was no failure. Beside it, each user's own share of the host's budget:
        // a local user failing their own verdicts spends only that.
        guard let failure = try await failures.reserve(requester.serial) else {
            return overBudget("failures", requester, user, op, "this host has caused too many failed verdicts; try later\n")
        }
        guard let userFailure = try await userFailures.reserve(requester.serial + " " + user.value) else {
            failures.refund(failure)
            return overBudget("user_failures", requester, user, op, "this host has caused too many failed verdicts for this user; try later\n")
        }
        func refundFailures() {
            failures.refund(failure)
            userFailures.refund(userFailure)
        }
        var challenge: HostBudget.Reservation?
        if op == .challenge {
            // Each challenge written into a user's record costs the host: one certificate
            // cannot churn every user's row.
            guard let c = try await challenges.reserve(requester.serial) else {
                refundFailures()
                return overBudget("challenges", requester, user, op, "this host has asked for too many tap challenges; try later\n")
            }
            challenge = c
        }
        let hashes = Self.hashes(request)
        // More verdicts that hash than slots: answered 503 at once, before the ledger is
        // asked, so a burst of them cannot hold what every other login needs.
        if hashes && !hashing.take() {
            refundFailures()
            if let challenge { challenges.refund(challenge) }
            Counter(label: ServiceMetrics.busy).increment()
            logger.warning("hashing verdicts at their limit; refused", metadata: ["peer": "\(requester)", "user": "\(user.value)"])
            return ServiceResponse(503, "the verifier is busy; ask another\n")
        }
        defer { if hashes { hashing.give() } }
        let reply: HelperProtocol.Reply
        var offlineLines = ""
        var countsAsFailure = false
        do {
            switch request {
            case .summary:
                reply = try await summary(user, by: requester)
            default:
                let outcome = try await decide(request, user, body: body, by: requester)
                switch outcome {
                case .refused(let why): throw RecordRefused(why: why)
                case .repeated(let attempt):
                    logger.notice("verdict repeated for a retried request", metadata: ["host": "\(requester.name)", "user": "\(user.value)",
                                                                                     "operation": "\(op.rawValue)", "request": "\(requester.requestID)"])
                    return ServiceResponse(200, HelperProtocol.encode(.attempt(attempt)))
                case .decided(let decision, let hadRecord, let stock):
                    reply = decision.reply
                    offlineLines = stock
                    // A refusal for a name without a record, or for a locked user, is no
                    // failure of the host's: it changes no one's count.
                    switch reply {
                    case .attempt(let a) where hadRecord && !reply.accepted && a.verdict != .locked: countsAsFailure = true
                    case .access(.none) where hadRecord: countsAsFailure = true
                    default: break
                    }
                }
            }
        } catch {
            refundFailures()
            if let challenge { challenges.refund(challenge) }
            throw error
        }
        if !countsAsFailure { refundFailures() }
        Counter(label: ServiceMetrics.verdicts, dimensions: [("result", reply.result)]).increment()
        logger.notice("verdict", metadata: ["host": "\(requester.name)", "serial": "\(requester.serial)", "peer": "\(requester.address)",
                                            "rhost": "\(requester.remoteHost)", "service": "\(requester.service)", "user": "\(user.value)",
                                            "operation": "\(op.rawValue)", "result": "\(reply.result)"])
        return ServiceResponse(200, HelperProtocol.encode(reply) + offlineLines)
    }

    func overBudget(_ budget: String, _ r: Requester, _ user: UserName, _ op: HelperProtocol.Operation, _ text: String) -> ServiceResponse {
        Counter(label: ServiceMetrics.overBudget, dimensions: [("budget", budget)]).increment()
        logger.warning("host over its \(budget) budget; refused",
                       metadata: ["host": "\(r)", "user": "\(user.value)", "operation": "\(op.rawValue)"])
        return ServiceResponse(429, text)
    }

    /// A summary: read only (no lock, nothing written; the journal has a line).
    func summary(_ user: UserName, by requester: Requester) async throws -> HelperProtocol.Reply {
        let (ledger, policy, rootPassword) = (self.ledger, config.policy, config.rootPassword)
        let state = try await withDeadline(deadline) { try await ledger.read(.user(user)) }
        if let why = state.refusal { throw RecordRefused(why: why) }
        return try FleetVerifier.decide(.summary, user: user, record: state.record, policy: policy, host: requester.name,
                                        now: state.now, rootPassword: rootPassword).reply
    }

    /// A request that changes the record (challenge, access, code, password, tap) or
    /// reports offline logins, decided on the user's row in one commit with its audit rows;
    /// the verdict exists only once that is durable. Time is the ledger's: every replica
    /// agrees.
    func decide(_ request: HelperProtocol.Request, _ user: UserName, body: [UInt8], by requester: Requester) async throws -> VerdictOutcome {
        let (ledger, policy, rootPassword) = (self.ledger, config.policy, config.rootPassword)
        let binding = requester.requestID.isEmpty ? "" : binder.binding(serial: requester.serial, operation: request.operation, body: body)
        let hashes = Self.hashes(request)
        return try await withDeadline(deadline) {
            try await ledger.commit(.user(user), hashes: hashes) { state in
                if let why = state.refusal {
                    state.audit(AuditFacts(operation: request.operation.rawValue, credential: "", result: "refused", reason: why.description), by: requester)
                    return .refused(why)
                }
                if case .offline(let report) = request {
                    return .decided(Self.offline(report, &state, by: requester), hadRecord: state.record != nil, offline: "")
                }
                if case .perform = request, !binding.isEmpty,
                   let attempt = RecentRequests.find(state.recent, id: requester.requestID, binding: binding) {
                    return .repeated(attempt)
                }
                let decision = try FleetVerifier.decide(request, user: user, record: state.record, policy: policy, host: requester.name,
                                                        now: state.now, rootPassword: rootPassword)
                // A name without a record stays without one: its verdict changes nothing.
                if decision.changed, state.record != nil { state.record = decision.record }
                if case .attempt(let a) = decision.reply, !binding.isEmpty {
                    state.recent = RecentRequests.adding(state.recent, RememberedVerdict(requestID: requester.requestID, binding: binding, attempt: a))
                }
                state.audit(AuditFacts.of(request, decision.reply), by: requester)
                // An accepted tap from an offline=tap host: the stock of offline pairs for its
                // spare challenges, derived here from the card's secret.
                var stock = ""
                if case .perform(.tap(let id, _, _)) = request, decision.reply.accepted,
                   let card = state.record?.tokens.first(where: { $0.id == id }) {
                    stock = OfflineWire.answerLines(card: card, spares: OfflineWire.spares(HelperProtocol.lines(body)),
                                                    epoch: state.offlineEpoch, now: state.now)
                }
                return .decided(decision, hadRecord: state.record != nil, offline: stock)
            }
        }
    }

    /// A host's offline logins of the user, each an audit row of the user's chain (the
    /// host's time of the login in the reason; PAM's service and remote host as the host saw
    /// them); answers the user's offline epoch (0 for a name without a record: the host's
    /// pair is then void).
    static func offline(_ report: [String], _ state: inout LedgerState, by r: Requester) -> FleetDecision {
        guard state.record != nil else { return FleetDecision(reply: .offline(epoch: 0), record: nil, changed: false) }
        for line in report {
            let w = line.splitBytes(UInt8(ascii: " "), omittingEmpty: false)
            guard w.count == 4 else { continue }
            var login = r
            (login.service, login.remoteHost) = (w[2] == "-" ? "" : w[2], w[3] == "-" ? "" : w[3])
            state.audit(AuditFacts(operation: "offline-tap", credential: "tap", result: w[1], reason: "offline on \(r.name) at \(w[0])"), by: login)
        }
        return FleetDecision(reply: .offline(epoch: state.offlineEpoch), record: nil, changed: false)
    }

    /// What stands for a hash in a record shown to an administrator or the helpdesk.
    public static let hiddenHash = "hidden"

    /// An administrator's (or the helpdesk's) request.
    func administer(_ route: FleetAPI.Route, uri: String, body: [UInt8], by requester: Requester) async throws -> ServiceResponse {
        switch route {
        case .users:
            logger.notice("users listed", metadata: ["admin": "\(requester)"])
            return ServiceResponse(200, try await ledger.users().map { "\($0.user) \($0.tokens) \($0.hasPassword ? 1 : 0) \($0.failures)\n" }.joined())
        case .show(let user):
            let state = try await ledger.read(.user(user))
            guard var r = state.record else { return ServiceResponse(404, "\(user.value) has no record\n") }
            logger.notice("record shown", metadata: ["admin": "\(requester)", "user": "\(user.value)"])
            if let why = state.refusal { return ServiceResponse(422, "\(why)\n") }
            // Every secret replaced by a marker; a card's access key by 16 zero bytes, so
            // that "protected" still shows; no hash leaves the server either (a 4-digit simple
            // password is 10⁴ guesses at its hash): each is `hidden`, so that "set" and "N
            // recovery codes left" still show.
            let protected = Set(r.tokens.filter { $0.accessKey != nil }.map(\.id))
            r = SealedRecords.stripped(r)
            for i in r.tokens.indices where protected.contains(r.tokens[i].id) {
                r.tokens[i].accessKey = SecretBytes([UInt8](repeating: 0, count: 16))
            }
            r.passwordHash = r.passwordHash.map { _ in Self.hiddenHash }
            r.recoveryCodes = r.recoveryCodes.map { _ in Self.hiddenHash }
            r.usedRecoveryCodes = r.usedRecoveryCodes.map { _ in Self.hiddenHash }
            for i in r.tempCodes.indices { r.tempCodes[i].hash = Self.hiddenHash }
            r.invitation?.hash = Self.hiddenHash
            return ServiceResponse(200, RecordFormat.text(r))
        case .change(let verb, let user):
            let change: AdminChange
            do throws(AdminChange.Failure) { change = try AdminChange.decode(verb: verb, body: body, user: user) } catch {
                return ServiceResponse(400, "\(error)\n")
            }
            let outcome = try await self.change(change, user, by: requester)
            logger.notice("record changed", metadata: ["admin": "\(requester)", "user": "\(user.value)", "change": "\(verb)",
                                                       "outcome": "\(outcome.text.dropLast())"])
            return ServiceResponse(200, outcome.text)
        case .audit:
            guard let q = FleetAPI.query(uri) else { return ServiceResponse(400, "a bad query\n") }
            let since = Int64(q["since"] ?? "0") ?? -1
            let limit = Int(q["limit"] ?? "1000") ?? -1
            guard since >= 0, (1...100_000).contains(limit) else { return ServiceResponse(400, "since must be a Unix time, limit 1-100000\n") }
            logger.notice("audit read", metadata: ["admin": "\(requester)"])
            let rows = try await ledger.auditRows(AuditQuery(user: q["user"], host: q["host"], since: since, limit: limit))
            var out = "row\ttime\tactor\tserial\trole\tpeer\trhost\tservice\tuser\toperation\tcredential\tresult\treason\n"
            for r in rows {
                let e = r.event
                let fields = ["\(r.chain):\(r.seq)", String(e.at / 1_000_000), e.actor, e.serial, e.role, e.peer, e.remoteHost, e.service,
                              e.user, e.operation, e.credential, e.result, e.reason]
                out += fields.map { String($0.map { $0 == "\t" || $0 == "\n" ? " " : $0 }) }.joined(separator: "\t") + "\n"
            }
            return ServiceResponse(200, out)
        case .revocations:
            return ServiceResponse(200, try await ledger.read(.fleet).revocations.map { "\($0.entry) \($0.at) \($0.by)\n" }.joined())
        case .hosts:
            return ServiceResponse(200, seenHosts.all.map { "\($0.name) \($0.seen.serial) \($0.seen.notAfter) \($0.seen.lastSeen)\n" }.joined())
        case .hostAdd(let name):
            guard hostCA != nil else { return ServiceResponse(404, "hosts cannot join through this replica: smartotpd.conf sets no host_ca_key\n") }
            var valid: Int64 = 86_400
            if let v = FleetAPI.query(uri)?["valid"] {
                guard let n = Int64(v), (60...2_592_000).contains(n) else { return ServiceResponse(400, "valid= must be 60 to 2592000 seconds\n") }
                valid = n
            }
            let until = clock() + valid
            guard let token = joinTokens.make(name: name, until: until) else { return ServiceResponse(503, "no random bytes\n") }
            try await ledger.commit(.fleet) { state in
                state.audit(AuditFacts(operation: "host-add", credential: "", result: "token", reason: "\(name) until \(until)"), by: requester)
            }
            logger.notice("join token made", metadata: ["admin": "\(requester)", "host": "\(name)", "until": "\(until)"])
            return ServiceResponse(200, token + "\n")
        case .join, .renew:
            return ServiceResponse(404, "no such path\n")
        case .revoke(let revoke):
            let entry = String(decoding: body, as: UTF8.self).trimmingSpaces()
            guard FleetAPI.isRevocationEntry(entry) else { return ServiceResponse(400, "name a host certificate by its common name or serial\n") }
            let (changed, list) = try await ledger.commit(.fleet) { state -> (Bool, [String]) in
                let present = state.revocations.contains { $0.entry == entry }
                guard present != revoke else { return (false, state.revocations.map(\.entry)) }
                if revoke { state.revocations.append(Revocation(entry: entry, at: state.now, by: requester.name)) }
                else { state.revocations.removeAll { $0.entry == entry } }
                state.audit(AuditFacts(operation: revoke ? "revoke-host" : "restore-host", credential: "", result: "changed", reason: entry), by: requester)
                return (true, state.revocations.map(\.entry))
            }
            logger.notice(revoke ? "host revoked" : "host restored", metadata: ["admin": "\(requester)", "entry": "\(entry)", "changed": "\(changed)"])
            // This replica at once; the others at their next read (every two seconds).
            revoked.setStored(list)
            return ServiceResponse(200, changed ? (revoke ? "revoked \(entry)\n" : "restored \(entry)\n")
                                   : (revoke ? "\(entry) was already revoked\n" : "\(entry) was not revoked\n"))
        case .health, .verify:
            return ServiceResponse(405, "method not allowed\n")
        }
    }

    /// An administrator's change: one commit on the user's row, the new secrets sealed (and
    /// only those: a secret already stored is never rewritten), the audit row with it. The
    /// outcome never holds a secret.
    func change(_ change: AdminChange, _ user: UserName, by requester: Requester) async throws -> AdminChange.Outcome {
        let result: Result<AdminChange.Outcome, RecordRefused> = try await ledger.commit(.user(user)) { state in
            if let why = state.refusal, !change.isRemoval {
                state.audit(AuditFacts(operation: change.verb, credential: "", result: "refused", reason: why.description), by: requester)
                return .failure(RecordRefused(why: why))
            }
            let (outcome, next) = try change.apply(to: state.record, user: user, now: state.now)
            switch next {
            case .keep: break
            case .remove: state.record = nil
            case .write(let record): state.record = record
            }
            // A card enrolled, removed or replaced: every host's offline pair of this user is
            // void once that host is online again.
            if case .keep = next {} else if change.changesTokens { state.renewOfflineEpoch() }
            state.audit(AuditFacts(operation: change.verb, credential: "", result: outcome.auditResult, reason: outcome.auditReason), by: requester)
            return .success(outcome)
        }
        return try result.get()
    }
}

extension AdminChange {
    var isRemoval: Bool {
        switch self {
        case .removeUser, .removeToken: return true
        default: return false
        }
    }

    /// Whether it adds, removes or replaces a token (the offline epoch moves).
    var changesTokens: Bool {
        switch self {
        case .enroll, .removeToken, .removeUser, .merge, .place, .confirm: return true
        case .passwd, .recovery, .resync, .unlock, .tempCode, .removeTempCodes, .invite: return false
        }
    }
}

extension AdminChange.Outcome {
    var auditResult: String {
        switch self {
        case .token, .imported: return "done"
        case .done(let found): return found ? "done" : "not-found"
        case .counter(let c): return c == nil ? "not-found" : "done"
        }
    }

    var auditReason: String {
        switch self {
        case .token(let id): return "token \(id) added"
        case .done: return ""
        case .counter(let c): return c.map { "counter \($0)" } ?? "the two codes were not found in a row"
        case .imported(let r): return "token \(r.tokenID)\(r.newToken ? " added" : " updated")"
        }
    }
}
