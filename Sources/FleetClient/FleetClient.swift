import OTPCore
import POSIX
import SmartOTPFleet
import TokenStore
import Verifier

/// What came of asking the verifiers.
public enum Asked: Sendable, Equatable {
    /// A helper answer (the verifier's 200).
    case answer(String)
    /// A verifier answered and refused (403, 429, 4xx): a refusal, never an offline login.
    case refused(String)
    /// None answered, or only with 5xx (they cannot reach their database).
    case unreachable(String)
}

/// The way to the verifiers: FleetNet's HTTPS client in smartotp-fleet, a fake in tests.
public protocol Verifiers {
    func ask(_ operation: HelperProtocol.Operation, _ user: UserName, body: [UInt8], timeout: Int) -> Asked
}

/// What the fleet client needs of the host's settings (`ModuleConfig`).
public struct ClientSettings: Sendable {
    public var timeout: Int
    /// With `offline=tap`: the store the offline stocks live under, and their oldest age.
    public var offlineStore: String?
    public var offlineMaxAge: Int64
    public var policy: LockPolicy

    public init(timeout: Int = 10, offlineStore: String? = nil, offlineMaxAge: Int64 = 604_800, policy: LockPolicy = LockPolicy()) {
        self.timeout = timeout
        self.offlineStore = offlineStore
        self.offlineMaxAge = offlineMaxAge
        self.policy = policy
    }
}

/// The fleet client's decisions, one request at a time (a session's frames, or one run):
/// asks the verifiers; with `offline=tap`, reports the host's offline logins at the first
/// online summary and takes the user's offline epoch, sends spare challenges with each tap
/// and keeps the stock an accepted tap brings back, and while no verifier answers answers
/// a summary, a challenge and a tap from that stock. An offline tap is counted, decided and
/// cleared by the same procedure as every verdict (`VerdictProcedure`), its failures in the
/// stock. A typed code and the simple password are never checked offline.
public final class FleetClient {
    let verifiers: any Verifiers
    let settings: ClientSettings
    let stocks: OfflineStocks?
    let service: String
    let remoteHost: String
    /// Whether a user is root, by uid (the name service's): root is locked offline only as
    /// the policy says, as online.
    let isRoot: (UserName) -> Bool
    let clock: () -> Int64
    /// Draws a spare challenge.
    let random: () -> [UInt8]?

    /// How long after the verifiers last failed to answer a request asks them only briefly
    /// before an offline tap (a host off the network should not wait server_timeout each
    /// time); `briefTimeout` is that brief wait.
    public static let unreachableMemory: Int64 = 60
    public static let briefTimeout = 2

    public init(verifiers: any Verifiers, settings: ClientSettings, service: String = "", remoteHost: String = "",
                isRoot: @escaping (UserName) -> Bool = { Users.uid(of: $0.value) == 0 },
                clock: @escaping () -> Int64 = Clocks.unixTime, random: @escaping () -> [UInt8]? = { SecureRandom.bytes(8) }) {
        self.verifiers = verifiers
        self.settings = settings
        stocks = settings.offlineStore.map(OfflineStocks.init(store:))
        self.service = service
        self.remoteHost = remoteHost
        self.isRoot = isRoot
        self.clock = clock
        self.random = random
    }

    /// Whether the last request that got no verdict was refused by a verifier (rather than
    /// left without an answer): smartotp-fleet's exit status says which.
    public private(set) var refused = false
    /// No verifier answered a request of this session: with offline=tap its later requests
    /// are answered from the stock without asking again (one login waits once).
    var offline = false

    /// The answer to `request` for `user`: a helper answer, or a `FleetNotice` (no verdict).
    public func answer(_ request: HelperProtocol.Request, for user: UserName) -> String {
        refused = false
        return decide(request, for: user)
    }

    func decide(_ request: HelperProtocol.Request, for user: UserName) -> String {
        switch request {
        case .offline:
            return FleetNotice.text("offline reports are the fleet client's own to send")
        case .summary: return summary(user)
        case .challenge:
            return online(request, user) { _ in usableStock(user)?.pairs.first.map { HelperProtocol.encode(challenge: $0.challenge) } }
        case .perform(.tap(let id, let challenge, let response)):
            if let stock = usableStock(user), stock.pairs.contains(where: { ConstantTime.equals($0.challenge, challenge) }) {
                // A challenge of the stock: this tap is decided here, offline.
                return offlineTap(user, tokenID: id, challenge: challenge, response: response)
            }
            return tapOnline(request, user)
        default:
            return online(request, user) { _ in nil }
        }
    }

    /// The timeout of the next request: brief when the verifiers did not answer a moment ago.
    var timeout: Int {
        guard let stocks, let last = stocks.lastUnreachable(), clock() - last < Self.unreachableMemory else { return settings.timeout }
        return min(settings.timeout, Self.briefTimeout)
    }

    func ask(_ request: HelperProtocol.Request, _ user: UserName, extra: String = "") -> Asked {
        if offline && stocks != nil { return .unreachable("no verifier answered earlier in this login") }
        var body = Array((request.input + extra).utf8)
        defer { ConstantTime.wipe(&body) }
        let asked = verifiers.ask(request.operation, user, body: body, timeout: timeout)
        switch asked {
        case .unreachable:
            offline = true
            stocks?.markUnreachable(clock())
        case .answer, .refused: if stocks?.lastUnreachable() != nil { stocks?.markUnreachable(nil) }
        }
        return asked
    }

    /// Asks the verifiers; when none answers, `offline` may answer instead (nil: no verdict).
    func online(_ request: HelperProtocol.Request, _ user: UserName, offline: (String) -> String?) -> String {
        switch ask(request, user) {
        case .answer(let text): return text
        case .refused(let why): return refusal(why)
        case .unreachable(let why):
            guard stocks != nil else { return FleetNotice.text(why) }
            return offline(why) ?? FleetNotice.text(why + "; offline only a tap, against the host's offline stock, can log in")
        }
    }

    func refusal(_ why: String) -> String {
        refused = true
        return FleetNotice.text(why)
    }

    /// The stock of `user` when `offline=tap` and it can be used now.
    func usableStock(_ user: UserName) -> OfflineStock? {
        guard let stock = stocks?.read(user), stock.usable(now: clock(), maxAge: settings.offlineMaxAge) else { return nil }
        return stock
    }

    /// Online: the verifiers' summary, after the host's offline logins are reported and the
    /// user's epoch read back (a stock made under another is void). Offline: the stock's
    /// card, no code, no password, the failures counted here.
    func summary(_ user: UserName) -> String {
        switch ask(.summary, user) {
        case .answer(let text):
            if stocks != nil, (try? HelperProtocol.decodeSummary(text)) != nil { synchronise(user) }
            return text
        case .refused(let why): return refusal(why)
        case .unreachable(let why):
            guard let stocks else { return FleetNotice.text(why) }
            guard let stock = stocks.read(user) else { return FleetNotice.text(why + "; no offline stock for " + user.value) }
            guard stock.usable(now: clock(), maxAge: settings.offlineMaxAge) else {
                return FleetNotice.text(why + "; the offline stock of \(user.value) is used up or older than offline_max_age (\(settings.offlineMaxAge) s)")
            }
            let now = clock()
            let root = isRoot(user)
            return HelperProtocol.encode(.summary(RecordSummary(cards: [stock.card], codeDigits: [], recoveryCodes: 0, hasPassword: false,
                                                               failures: stock.tally.countedFailures(settings.policy),
                                                               lock: stock.lockState(settings.policy, isRoot: root, now: now), offline: true)))
        }
    }

    /// Online again: the offline logins go to the fleet's audit trail, and the user's
    /// offline epoch comes back; a stock made under another epoch is void (the fleet
    /// changed the user's cards meanwhile, or removed the user). Never fails the login.
    func synchronise(_ user: UserName) {
        guard let stocks, let stock = stocks.read(user) else { return }
        let pending = stock.reports
        guard case .answer(let text) = ask(.offline(report: pending), user),
              case .offline(let epoch)? = try? HelperProtocol.decode(text, for: .offline) else { return }
        try? stocks.update(user) { (state: inout OfflineStock?) in
            guard var s = state else { return }
            s.reports.removeFirst(min(pending.count, s.reports.count))
            s.failures = []
            state = s.epoch == epoch && epoch != 0 ? s : nil
        }
    }

    /// A tap asked online, with spare challenges when `offline=tap`: an accepted tap brings
    /// the next stock, kept before the verdict goes to the module.
    func tapOnline(_ request: HelperProtocol.Request, _ user: UserName) -> String {
        var spares: [[UInt8]] = []
        if stocks != nil { for _ in 0..<OfflineWire.maxSpares { if let r = random() { spares.append(r) } } }
        switch ask(request, user, extra: OfflineWire.spareLines(spares)) {
        case .answer(let text):
            let (answer, lines) = OfflineWire.split(text)
            if let stocks, !lines.isEmpty, let stock = OfflineStock.from(lines, user: user) {
                try? stocks.update(user) { (state: inout OfflineStock?) in
                    var next = stock
                    // Its age is counted on the host's clock, the one usable() reads: the
                    // verifiers' clock may differ from the host's.
                    next.created = clock()
                    next.reports = state?.reports ?? []
                    state = next
                }
            }
            return answer
        case .refused(let why): return refusal(why)
        case .unreachable(let why): return FleetNotice.text(why)
        }
    }

    /// A tap on a challenge of the stock: the pair used up whatever the answer, the attempt
    /// counted before the check, the count cleared on success; reported at the next online
    /// summary.
    func offlineTap(_ user: UserName, tokenID: String, challenge: [UInt8], response: [UInt8]) -> String {
        guard let stocks else { return FleetNotice.text("offline=tap is not set") }
        let now = clock()
        let policy = settings.policy
        let root = isRoot(user)
        let attempt: Attempt
        do {
            attempt = try stocks.withLock(user) { (current: OfflineStock?, commit: (OfflineStock?) throws(OfflineStocks.Unusable) -> Void) throws(OfflineStocks.Unusable) -> Attempt in
                var verifier: String?
                let a = try VerdictProcedure.perform(current, policy: policy, isRoot: { root }, now: now,
                                                     commit: { (s: OfflineStock) throws(OfflineStocks.Unusable) in try commit(s) },
                                                     use: { stock in
                                                         guard let i = stock.pairs.firstIndex(where: { ConstantTime.equals($0.challenge, challenge) }) else { return false }
                                                         let usable = stock.usable(now: now, maxAge: settings.offlineMaxAge) && tokenID == stock.card.tokenID
                                                         verifier = stock.pairs.remove(at: i).verifier
                                                         return usable
                                                     },
                                                     decide: { _ in
                                                         guard let verifier else { return .rejected }
                                                         return ConstantTime.equals(Array(OfflineWire.verifier(challenge: challenge, response: response).utf8),
                                                                                    Array(verifier.utf8)) ? .accepted(.token(tokenID)) : .rejected
                                                     })
                return a
            }
        } catch {
            return FleetNotice.text(error.description)
        }
        let result: String
        switch attempt.verdict {
        case .accepted: result = "success"
        case .locked: result = "locked"
        default: result = attempt.lock.isLocked ? "locked" : "failure"
        }
        try? stocks.update(user) { (state: inout OfflineStock?) in
            state?.report(OfflineReport.line(at: now, result: result, service: service, remoteHost: remoteHost))
        }
        return HelperProtocol.encode(attempt)
    }
}
