import OTPCore
import POSIX
import SmartOTPFleet
import TokenStore
import Verifier

/// What a fleet host with `offline=tap` keeps of one user, so that a tap can log in while no
/// verifier answers: the card to expect, and a stock of pairs — a challenge and a verifier
/// of the card's answer to it (`OfflineWire`), made by the verifiers after the last
/// accepted online tap, each good for one login — with the fleet's offline epoch and time
/// of that tap; the failures counted offline (the host's deny policy); and the offline
/// logins not yet reported to the fleet. Never the card's secret, nor any answer.
///
///     smartotp-offline 2
///     card TOKEN-ID DEVICE-ID|- CREDENTIAL-NAME-HEX TOUCH
///     stock EPOCH CREATED
///     pair CHALLENGE-HEX VERIFIER-HEX
///     failure UNIX-TIME
///     report UNIX-TIME RESULT SERVICE RHOST
public struct OfflineStock: Sendable, Equatable {
    public var user: UserName
    public var card: RecordSummary.Card
    /// The fleet's offline epoch of the user when the stock was made, and the fleet's time.
    public var epoch: Int64
    public var created: Int64
    public var pairs: [Pair]
    public var failures: [Int64] = []
    /// OfflineReport lines, oldest first (at most OfflineReport.maxLines).
    public var reports: [String] = []

    public struct Pair: Sendable, Equatable {
        public var challenge: [UInt8]
        public var verifier: String

        public init(challenge: [UInt8], verifier: String) {
            self.challenge = challenge
            self.verifier = verifier
        }
    }

    public init(user: UserName, card: RecordSummary.Card, epoch: Int64, created: Int64, pairs: [Pair]) {
        self.user = user
        self.card = card
        self.epoch = epoch
        self.created = created
        self.pairs = pairs
    }

    static let header = "smartotp-offline 2"

    public var text: String {
        var out = Self.header + "\n"
        out += "card \(card.tokenID) \(card.deviceID ?? "-") \(Hex.encode(Array(card.credentialName.utf8))) \(card.touch ? 1 : 0)\n"
        out += "stock \(epoch) \(created)\n"
        for p in pairs { out += "pair \(Hex.encode(p.challenge)) \(p.verifier)\n" }
        for f in failures { out += "failure \(f)\n" }
        for r in reports { out += "report " + r + "\n" }
        return out
    }

    /// Reads the text; nil when it is not a well-formed stock (the caller then has none).
    public static func parse(_ text: String, user: UserName) -> OfflineStock? {
        let lines = text.splitBytes(UInt8(ascii: "\n"))
        guard lines.first == header, lines.count >= 3 else { return nil }
        var card: RecordSummary.Card?
        var stock: (Int64, Int64)?
        var pairs: [Pair] = [], failures: [Int64] = [], reports: [String] = []
        for line in lines.dropFirst() {
            let w = line.splitBytes(UInt8(ascii: " "), maxSplits: 1)
            guard w.count == 2 else { return nil }
            let f = w[1].splitBytes(UInt8(ascii: " "))
            switch w[0] {
            case "card":
                guard card == nil, f.count == 4, Token.isValidID(f[0]), let name = try? Hex.decode(f[2]), !name.isEmpty,
                      f[3] == "0" || f[3] == "1" else { return nil }
                card = .init(tokenID: f[0], deviceID: f[1] == "-" ? nil : f[1], credentialName: String(decoding: name, as: UTF8.self),
                             touch: f[3] == "1", protected: false)
            case "stock":
                guard stock == nil, f.count == 2, let e = Int64(f[0]), let c = Int64(f[1]) else { return nil }
                stock = (e, c)
            case "pair":
                guard f.count == 2, let c = try? Hex.decode(f[0]), (8...64).contains(c.count), f[1].utf8.count == 64 else { return nil }
                pairs.append(Pair(challenge: c, verifier: f[1]))
            case "failure":
                guard f.count == 1, let t = Int64(f[0]) else { return nil }
                failures.append(t)
            case "report":
                guard OfflineReport.isValid(w[1]) else { return nil }
                reports.append(w[1])
            default:
                return nil
            }
        }
        guard let card, let stock else { return nil }
        var s = OfflineStock(user: user, card: card, epoch: stock.0, created: stock.1, pairs: pairs)
        s.failures = failures
        s.reports = reports
        return s
    }

    /// The stock a verifier's answer to an accepted tap carries (`OfflineWire` lines); nil
    /// when it carries none.
    public static func from(_ lines: [String], user: UserName) -> OfflineStock? {
        parse(([header] + lines.compactMap { l -> String? in
            guard l.utf8.begins(with: "offline-") else { return nil }
            return String(l.dropFirst(8))
        }).joined(separator: "\n"), user: user)
    }

    /// Remembers an offline login for the fleet (the oldest dropped past the limit).
    public mutating func report(_ line: String) {
        reports.append(line)
        if reports.count > OfflineReport.maxLines { reports.removeFirst(reports.count - OfflineReport.maxLines) }
    }

    /// Whether the stock may be used at `now`: younger than `maxAge` from the online tap
    /// that made it (an offline login moves nothing on).
    public func usable(now: Int64, maxAge: Int64) -> Bool {
        let (age, overflow) = now.subtractingReportingOverflow(created)
        return !overflow && age >= 0 && age < maxAge && !pairs.isEmpty
    }
}

/// The tally the verdict procedure counts on: the host's own count of offline failures,
/// with pam_faillock's meaning (`UserRecord`'s arithmetic).
extension OfflineStock: Tally {
    var tally: UserRecord { UserRecord(user: user, failureTimes: failures, created: 0) }

    public func lockState(_ policy: LockPolicy, isRoot: @autoclosure () -> Bool, now: Int64) -> LockState {
        tally.lockState(policy, isRoot: isRoot(), now: now)
    }

    public mutating func countFailure(at now: Int64, policy: LockPolicy, isRoot: @autoclosure () -> Bool) {
        var t = tally
        t.countFailure(at: now, policy: policy, isRoot: isRoot())
        failures = t.failureTimes
    }

    public mutating func clearFailures() { failures = [] }
}

/// The stocks of a fleet host: one root-owned 0600 file a user in a root-owned 0700 folder
/// (`STORE/offline`, beside the local store's folders), each replaced whole (written,
/// synced, renamed), every change under one lock on the folder.
public struct OfflineStocks: Sendable {
    /// The local store's root (made root's 0700 when missing).
    public let store: String
    public let directory: String

    public init(store: String) {
        self.store = store
        directory = store + "/offline"
    }

    func path(_ user: UserName) -> String { directory + "/" + user.value }

    public struct Unusable: Error, CustomStringConvertible {
        public let description: String
    }

    /// The folder, made when missing; refused when it is not root's 0700 folder in a store
    /// folder only root may write (paths under a folder others could write could be swapped
    /// between check and use).
    func checkedDirectory() throws(Unusable) -> FileDescriptor {
        try? FileSystem.makeDirectory(store, mode: 0o700)
        guard let root = try? FileSystem.linkStatus(store), root.isDirectory, root.owner == Users.effectiveUID,
              root.permissions & 0o022 == 0 else { throw Unusable(description: "\(store) is not a folder only root may write") }
        try? FileSystem.makeDirectory(directory, mode: 0o700)
        guard let st = try? FileSystem.linkStatus(directory), st.isDirectory, st.owner == Users.effectiveUID,
              st.permissions & 0o077 == 0, let fd = try? FileDescriptor.open(directory, [.readOnly, .directory]) else {
            throw Unusable(description: "\(directory) is not root's 0700 folder")
        }
        return fd
    }

    /// `user`'s stock; nil when there is none or it cannot be trusted (not a regular file of
    /// root's that only root reads, or malformed).
    public func read(_ user: UserName) -> OfflineStock? {
        guard let dir = try? checkedDirectory() else { return nil }
        defer { dir.close() }
        return load(user)
    }

    func load(_ user: UserName) -> OfflineStock? {
        let file = path(user)
        guard let fd = try? FileDescriptor.openIfExists(file, .readOnly) else { return nil }
        defer { fd.close() }
        guard let st = try? fd.status(file), st.isRegular, st.owner == Users.effectiveUID, st.permissions & 0o077 == 0,
              let bytes = try? fd.readAll(file, limit: 64 * 1024) else { return nil }
        return OfflineStock.parse(String(decoding: bytes, as: UTF8.self), user: user)
    }

    /// `body` with `user`'s stock under the folder's lock, and `commit` to write it (nil:
    /// remove it) durably before `body` goes on: what the verdict procedure needs to count
    /// an attempt before it decides.
    public func withLock<R>(_ user: UserName, _ body: (OfflineStock?, _ commit: (OfflineStock?) throws(Unusable) -> Void) throws(Unusable) -> R) throws(Unusable) -> R {
        let dir = try checkedDirectory()
        defer { dir.close() }
        do throws(SystemCallError) { try dir.lockExclusive(directory) } catch { throw Unusable(description: error.description) }
        return try body(load(user)) { (next: OfflineStock?) throws(Unusable) in try write(user, next) }
    }

    /// Changes `user`'s stock under the lock.
    @discardableResult
    public func update<R>(_ user: UserName, _ body: (inout OfflineStock?) -> R) throws(Unusable) -> R {
        try withLock(user) { (current: OfflineStock?, commit: (OfflineStock?) throws(Unusable) -> Void) throws(Unusable) -> R in
            var state = current
            let result = body(&state)
            if state != current { try commit(state) }
            return result
        }
    }

    func write(_ user: UserName, _ state: OfflineStock?) throws(Unusable) {
        let file = path(user)
        guard let state else {
            FileSystem.unlink(file)
            do throws(SystemCallError) { try FileSystem.syncDirectory(directory) } catch { throw Unusable(description: error.description) }
            return
        }
        let temp = directory + "/." + user.value + ".tmp"
        do throws(SystemCallError) {
            FileSystem.unlink(temp)
            let fd = try FileDescriptor.open(temp, [.writeOnly, .create, .exclusive], mode: 0o600)
            defer { fd.close() }
            try fd.ownAndProtect(uid: Users.effectiveUID, mode: 0o600, temp)
            try fd.writeAll(Array(state.text.utf8), temp)
            try fd.sync(temp)
            try FileSystem.rename(temp, to: file)
            try FileSystem.syncDirectory(directory)
        } catch {
            FileSystem.unlink(temp)
            throw Unusable(description: "\(file) cannot be written: \(error.description)")
        }
    }

    /// When the verifiers last failed to answer this host, so that the next logins ask them
    /// only briefly before their offline tap.
    public func lastUnreachable() -> Int64? {
        let file = directory + "/.unreachable"
        guard let st = try? FileSystem.linkStatus(file), st.isRegular, st.owner == Users.effectiveUID,
              let bytes = (try? FileSystem.read(file, limit: 32)) ?? nil else { return nil }
        return Int64(String(decoding: bytes, as: UTF8.self).splitBytes(UInt8(ascii: "\n")).first ?? "")
    }

    /// Notes (at `now`) or clears (nil) that the verifiers did not answer.
    public func markUnreachable(_ now: Int64?) {
        guard let dir = try? checkedDirectory() else { return }
        dir.close()
        let file = directory + "/.unreachable"
        FileSystem.unlink(file)
        guard let now, let fd = try? FileDescriptor.open(file, [.writeOnly, .create, .exclusive], mode: 0o600) else { return }
        defer { fd.close() }
        try? fd.writeAll(Array("\(now)\n".utf8), file)
    }
}
