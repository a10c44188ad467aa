import OTPCore
import POSIX
import SmartOTPAuth
import TokenStore
import Verifier

/// The record service of a fleet host: the fleet client (`smartotp-fleet --session`) asks
/// the verifiers over mutual TLS. One client process and one TLS connection serve a whole
/// login (summary, challenge, verdict): the process is started at the first request and
/// ends with this object. The module itself loads no TLS library and starts no thread.
///
/// With `offline=tap`, an accepted tap leaves the host one offline pair for the user
/// (`OfflinePairs`); when no verifier answers, the login is checked against that pair
/// instead: a tap only (the summary offers neither codes nor the simple password), the
/// failures counted here with the same deny policy, the pair rolled at each offline
/// login, and the offline logins reported to the fleet's audit trail at the next online
/// one, which also fetches the user's offline epoch: a pair made under another epoch, or
/// older than `offline_max_age`, is refused.
public final class FleetRecords: HelperSpeaking {
    public let path: String
    public let arguments: [String]
    private var session: Session?
    let offline: OfflinePairs?
    let policy: LockPolicy
    let maxAge: Int64
    let service: String
    let remoteHost: String
    /// Whether this login is being decided offline (no verifier answered its summary).
    public private(set) var offlineMode = false
    public var decidingOffline: Bool { offlineMode }
    /// Why the verifiers gave no verdict, when none answered.
    var unreachableWhy = ""
    /// The user's offline epoch, as the fleet said in this login.
    var epoch: Int64?

    /// How long after the verifiers last failed to answer a login asks them only briefly
    /// before its offline tap (a host off the network should not wait server_timeout each
    /// time); `briefTimeout` is that brief wait.
    static let unreachableMemory: Int64 = 60
    static let briefTimeout = 2

    /// `service` and `remoteHost` (PAM's, for the fleet's audit trail) go on the client's
    /// command line when known: they are not secret.
    public init(_ config: ModuleConfig, service: String = "", remoteHost: String = "") {
        path = config.client ?? Installation.fleetClient
        offline = config.offlineTap ? OfflinePairs(store: config.store) : nil
        policy = config.policy.lock
        maxAge = config.offlineMaxAge
        self.service = service
        self.remoteHost = remoteHost
        var servers = ""
        for s in config.servers { servers += servers.isEmpty ? s : "," + s }
        var timeout = config.serverTimeout
        if let offline, let last = offline.lastUnreachable(), Clocks.unixTime() - last < Self.unreachableMemory {
            timeout = min(timeout, Self.briefTimeout)
        }
        var arguments = ["--server", servers, "--tls-dir", config.tlsDir, "--timeout", msg("\(timeout)"), "--session"]
        if !service.isEmpty { arguments += ["--service", service] }
        if !remoteHost.isEmpty { arguments += ["--rhost", remoteHost] }
        self.arguments = arguments
    }

    // MARK: - the record service, online or offline

    public func summary(_ user: UserName, now: Int64) throws(RecordError) -> RecordSummary? {
        let out: String
        do throws(RecordError) { out = try answer(.summary, for: user) } catch {
            guard let offline, !unreachableWhy.isEmpty else { throw error }
            offline.markUnreachable(now)
            return try offlineSummary(user, now: now, offline, error)
        }
        offline?.markUnreachable(nil)
        let summary = try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeSummary(out) }
        if let offline, summary != nil { synchronise(user, now: now, offline) }
        return summary
    }

    public func issueChallenge(for user: UserName, now: Int64) throws(RecordError) -> [UInt8] {
        guard offlineMode else {
            let out = try answer(.challenge, for: user)
            return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeChallenge(out) }
        }
        guard let pair = offline?.read(user)?.pair else { throw .verifier("the offline pair is gone") }
        return pair.challenge
    }

    public func accessAnswers(for user: UserName, tokenID: String, cardChallenge: [UInt8], ourChallenge: [UInt8], now: Int64) throws(RecordError) -> AccessAnswers? {
        // A protected card's access key stays with the verifiers: no offline pair is kept
        // for one, and nothing is answered offline.
        guard offlineMode else {
            let out = try answer(.access(tokenID: tokenID, cardChallenge: cardChallenge, ourChallenge: ourChallenge), for: user)
            return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeAccess(out) }
        }
        return nil
    }

    public func perform(_ operation: RecordOperation, for user: UserName, now: Int64) throws(RecordError) -> Attempt {
        guard offlineMode else {
            let out = try answer(.perform(operation), for: user)
            return try decoded { () throws(HelperProtocol.ParseError) in try HelperProtocol.decodeAttempt(out) }
        }
        guard let offline else { throw .verifier("no verifier answered") }
        // Offline, only a tap against the pair: a typed code or the simple password cannot
        // be checked without the verifiers, and is refused.
        guard case .tap(let tokenID, let challenge, let response) = operation else {
            throw .verifier("no verifier answered, and only a tap is checked offline")
        }
        let (attempt, written) = offline.update(user) { (state: inout OfflineState?) -> Attempt in
            guard var s = state else { return Attempt(.rejected, lock: .open) }
            var tally = UserRecord(user: user, failureTimes: s.failures, created: 0)
            let lock = tally.lockState(policy, isRoot: false, now: now)
            if lock.isLocked {
                s.report(OfflineReport.line(at: now, result: "locked", service: service, remoteHost: remoteHost))
                state = s
                return Attempt(.locked, lock: lock)
            }
            // The attempt counts before it is checked, as online: nobody learns a verdict
            // that was not counted.
            tally.countFailure(at: now, policy: policy, isRoot: false)
            s.failures = tally.failureTimes
            state = s
            var good = false
            if let pair = s.pair {
                good = tokenID == s.card.tokenID && ConstantTime.equals(challenge, pair.challenge)
                    && usable(pair, now: now) && PasswordHash.verify(Hex.encode(response), hash: pair.hash)
            }
            if good {
                s.failures = []
                // Used up: the next pair is the one the card answered in this same tap
                // (keepOffline); until then there is none.
                s.pair = nil
                s.report(OfflineReport.line(at: now, result: "success", service: service, remoteHost: remoteHost))
                state = s
                return Attempt(.accepted(.token(tokenID)), lock: .open)
            }
            let after = UserRecord(user: user, failureTimes: s.failures, created: 0).lockState(policy, isRoot: false, now: now)
            s.report(OfflineReport.line(at: now, result: after.isLocked ? "locked" : "failure", service: service, remoteHost: remoteHost))
            state = s
            return Attempt(.rejected, lock: after)
        }
        guard written else { throw .verifier("the offline state under " + offline.directory + " cannot be written") }
        return attempt
    }

    public func offlineChallenge(for user: UserName) -> [UInt8]? {
        offline == nil ? nil : SecureRandom.bytes(8)
    }

    /// Keeps the card's answer to the spare challenge as the next pair (its hash), under
    /// the epoch the fleet gave in this login (offline: the one the last pair had).
    public func keepOffline(for user: UserName, card: RecordSummary.Card, challenge: [UInt8], response: [UInt8], now: Int64) {
        guard let offline, !card.protected, let hash = PasswordHash.make(Hex.encode(response)) else { return }
        offline.update(user) { (state: inout OfflineState?) in
            let epoch = self.epoch ?? state?.pair?.epoch ?? 0
            var s = state ?? OfflineState(card: card, pair: nil)
            s.card = card
            s.pair = OfflineState.Pair(challenge: challenge, created: now, epoch: epoch, hash: hash)
            state = s
        }
    }

    /// Whether `pair` may be used at `now`: younger than offline_max_age.
    func usable(_ pair: OfflineState.Pair, now: Int64) -> Bool {
        let (age, overflow) = now.subtractingReportingOverflow(pair.created)
        return !overflow && age >= 0 && age < maxAge
    }

    /// The summary of an offline login: the pair's card only, no codes, no password; the
    /// failures counted on this host. Throws (no verdict) when there is no usable pair.
    func offlineSummary(_ user: UserName, now: Int64, _ offline: OfflinePairs, _ error: RecordError) throws(RecordError) -> RecordSummary? {
        guard let state = offline.read(user) else { throw error }
        guard let pair = state.pair else { throw .verifier(error.description + "; no offline pair for " + user.value + " (its last one was used)") }
        guard usable(pair, now: now) else {
            throw .verifier(error.description + msg("; the offline pair of \(user.value) is older than offline_max_age (\(maxAge) s)"))
        }
        offlineMode = true
        let tally = UserRecord(user: user, failureTimes: state.failures, created: 0)
        return RecordSummary(cards: [state.card], codeDigits: [], recoveryCodes: 0, hasPassword: false,
                             failures: tally.countedFailures(policy), lock: tally.lockState(policy, isRoot: false, now: now))
    }

    /// Online again: the offline logins go to the fleet's audit trail, and the user's
    /// offline epoch comes back; a pair made under another epoch is void (the fleet
    /// changed the user's cards meanwhile). Never fails the login.
    func synchronise(_ user: UserName, now: Int64, _ offline: OfflinePairs) {
        let pending = offline.read(user)?.reports ?? []
        guard let out = try? answer(.offline(report: pending), for: user),
              case .offline(let e)? = try? HelperProtocol.decode(out, for: .offline) else { return }
        epoch = e
        offline.update(user) { (state: inout OfflineState?) in
            guard var s = state else { return }
            s.reports.removeFirst(min(pending.count, s.reports.count))
            s.failures = []
            if let p = s.pair, p.epoch != e { s.pair = nil }
            state = s
        }
    }

    /// One request frame out (`Frame.requestPayload`), one answer frame back.
    public func answer(_ request: HelperProtocol.Request, for user: UserName) throws(RecordError) -> String {
        let text: String
        do throws(SystemCallError) {
            if session == nil { session = try Session(path, arguments) }
            guard let session else { throw SystemCallError("posix_spawn", path, errno: 0) }
            var payload = Frame.requestPayload(request, for: user)
            var frame = Frame.encode(payload)
            ConstantTime.wipe(&payload)
            defer { ConstantTime.wipe(&frame) }
            try session.send(frame)
            var header = Frame.Header(limit: WireLimits.answer)
            var length: Int?
            while length == nil {
                let byte = try session.receive(1)
                do throws(FrameError) { length = try header.feed(byte.first ?? 0) } catch {
                    throw SystemCallError("read", path, errno: Errno.protocolError)
                }
            }
            text = String(decoding: try session.receive(length ?? 0), as: UTF8.self)
        } catch {
            // A client that failed once is not asked again: the next request starts anew.
            session = nil
            throw .verifier(path + ": no verdict from the fleet (" + error.description + ")")
        }
        // The client's last word when it got no verdict: whether any verifier answered.
        if let notice = FleetNotice.read(text) {
            session = nil
            if notice.unreachable { unreachableWhy = notice.why }
            throw .verifier(path + ": no verdict from the fleet (" + notice.why + ")")
        }
        return text
    }
}
