import OTPCore
import POSIX
import TokenStore
import Verifier

/// What a fleet host with `offline=tap` keeps of one user, so that a tap can log in while
/// no verifier answers: the card to expect, and one pair — a random challenge and a slow
/// hash (yescrypt) of the card's answer to it, asked of the card right after an accepted
/// tap. Never the card's secret: the pair is good for one offline login, then the card
/// answers the next challenge in the same tap. Also the failures counted offline (the same
/// deny policy) and the offline logins not yet reported to the fleet.
///
///     smartotp-offline 1
///     card TOKEN-ID DEVICE-ID|- CREDENTIAL-NAME-HEX TOUCH
///     pair CHALLENGE-HEX CREATED EPOCH YESCRYPT-HASH
///     failure UNIX-TIME
///     report UNIX-TIME RESULT SERVICE RHOST
public struct OfflineState: Sendable, Equatable {
    public var card: RecordSummary.Card
    public var pair: Pair?
    public var failures: [Int64] = []
    /// OfflineReport lines, oldest first (at most OfflineReport.maxLines).
    public var reports: [String] = []

    public struct Pair: Sendable, Equatable {
        public var challenge: [UInt8]
        public var created: Int64
        /// The fleet's offline epoch of the user when the pair was made.
        public var epoch: Int64
        public var hash: String

        public init(challenge: [UInt8], created: Int64, epoch: Int64, hash: String) {
            self.challenge = challenge
            self.created = created
            self.epoch = epoch
            self.hash = hash
        }
    }

    public init(card: RecordSummary.Card, pair: Pair?) {
        self.card = card
        self.pair = pair
    }

    static let header = "smartotp-offline 1"

    public var text: String {
        var out = Self.header + "\n"
        out += msg("card \(card.tokenID) \(card.deviceID ?? "-") \(Hex.encode(Array(card.credentialName.utf8))) \(card.touch ? 1 : 0)\n")
        if let p = pair { out += msg("pair \(Hex.encode(p.challenge)) \(p.created) \(p.epoch) \(p.hash)\n") }
        for f in failures { out += msg("failure \(f)\n") }
        for r in reports { out += "report " + r + "\n" }
        return out
    }

    /// Reads the text; nil when it is not a well-formed state (the caller then has none).
    public static func parse(_ text: String) -> OfflineState? {
        let lines = text.splitBytes(UInt8(ascii: "\n"))
        guard lines.first == header, lines.count >= 2 else { return nil }
        var state: OfflineState?
        for line in lines.dropFirst() {
            let w = line.splitBytes(UInt8(ascii: " "), maxSplits: 1)
            guard w.count == 2 else { return nil }
            let f = w[1].splitBytes(UInt8(ascii: " "))
            switch w[0] {
            case "card":
                guard state == nil, f.count == 4, Token.isValidID(f[0]), let name = try? Hex.decode(f[2]), !name.isEmpty,
                      f[3] == "0" || f[3] == "1" else { return nil }
                state = OfflineState(card: .init(tokenID: f[0], deviceID: f[1] == "-" ? nil : f[1],
                                                 credentialName: String(decoding: name, as: UTF8.self), touch: f[3] == "1", protected: false),
                                     pair: nil)
            case "pair":
                guard state != nil, state?.pair == nil, f.count == 4, let c = try? Hex.decode(f[0]), (1...64).contains(c.count),
                      let created = Int64(f[1]), let epoch = Int64(f[2]), !f[3].isEmpty else { return nil }
                state?.pair = Pair(challenge: c, created: created, epoch: epoch, hash: f[3])
            case "failure":
                guard state != nil, f.count == 1, let t = Int64(f[0]) else { return nil }
                state?.failures.append(t)
            case "report":
                guard state != nil, OfflineReport.isValid(w[1]) else { return nil }
                state?.reports.append(w[1])
            default:
                return nil
            }
        }
        return state
    }

    /// Remembers an offline login for the fleet (the oldest dropped past the limit).
    public mutating func report(_ line: String) {
        reports.append(line)
        if reports.count > OfflineReport.maxLines { reports.removeFirst(reports.count - OfflineReport.maxLines) }
    }
}

/// The offline states of a fleet host: one root-owned 0600 file a user in a root-owned
/// 0700 directory (`STORE/offline`, beside the local store's folders), each replaced
/// whole (written, synced, renamed), every change under one lock on the directory.
public struct OfflinePairs {
    /// The local store's root (made root's 0700 when missing, as `smartotp enroll` makes it).
    public let store: String
    public let directory: String

    public init(store: String) {
        self.store = store
        directory = store + "/offline"
    }

    func path(_ user: UserName) -> String { directory + "/" + user.value }

    /// The directory, made when missing; nil (no offline login) when it is not root's
    /// 0700 directory in a store folder only root may write.
    func checkedDirectory() -> FileDescriptor? {
        try? FileSystem.makeDirectory(store, mode: 0o700)
        // Paths under a folder others could write could be swapped between check and use.
        guard let root = try? FileSystem.linkStatus(store), root.isDirectory, root.owner == Users.effectiveUID,
              root.permissions & 0o022 == 0 else { return nil }
        try? FileSystem.makeDirectory(directory, mode: 0o700)
        guard let st = try? FileSystem.linkStatus(directory), st.isDirectory, st.owner == Users.effectiveUID,
              st.permissions & 0o077 == 0, let fd = try? FileDescriptor.open(directory, [.readOnly, .directory]) else { return nil }
        return fd
    }

    /// `user`'s state; nil when there is none or it cannot be trusted (not a regular file
    /// of root's that only root reads, or malformed).
    public func read(_ user: UserName) -> OfflineState? {
        guard let dir = checkedDirectory() else { return nil }
        defer { dir.close() }
        return load(user)
    }

    func load(_ user: UserName) -> OfflineState? {
        let file = path(user)
        guard let fd = try? FileDescriptor.openIfExists(file, .readOnly) else { return nil }
        defer { fd.close() }
        guard let st = try? fd.status(file), st.isRegular, st.owner == Users.effectiveUID, st.permissions & 0o077 == 0,
              let bytes = try? fd.readAll(file, limit: 64 * 1024) else { return nil }
        return OfflineState.parse(String(decoding: bytes, as: UTF8.self))
    }

    /// Changes `user`'s state under the lock: `body` gets it (nil: none) and sets what to
    /// keep (nil: remove it). False when it could not be written.
    @discardableResult
    public func update<R>(_ user: UserName, _ body: (inout OfflineState?) -> R) -> (R, Bool) {
        guard let dir = checkedDirectory() else {
            var none: OfflineState?
            return (body(&none), false)
        }
        defer { dir.close() }
        let locked = (try? dir.lockExclusive(directory)) != nil
        var state = load(user)
        let before = state
        let result = body(&state)
        guard state != before else { return (result, locked) }
        guard locked else { return (result, false) }
        let file = path(user)
        guard let state else {
            FileSystem.unlink(file)
            return (result, (try? FileSystem.syncDirectory(directory)) != nil)
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
            return (result, true)
        } catch {
            FileSystem.unlink(temp)
            return (result, false)
        }
    }

    /// When the verifiers last failed to answer this host (`.unreachable`'s time), so that
    /// the next logins do not wait the whole server_timeout before their offline tap.
    public func lastUnreachable() -> Int64? {
        guard let st = try? FileSystem.linkStatus(directory + "/.unreachable"), st.isRegular,
              let fd = try? FileDescriptor.openIfExists(directory + "/.unreachable", .readOnly) else { return nil }
        defer { fd.close() }
        guard let bytes = try? fd.readAll(directory + "/.unreachable", limit: 32) else { return nil }
        return Int64(String(decoding: bytes, as: UTF8.self).splitBytes(UInt8(ascii: "\n")).first ?? "")
    }

    /// Notes (at `now`) or clears (nil) that the verifiers did not answer.
    public func markUnreachable(_ now: Int64?) {
        guard let dir = checkedDirectory() else { return }
        dir.close()
        let file = directory + "/.unreachable"
        guard let now else { return FileSystem.unlink(file) }
        FileSystem.unlink(file)
        guard let fd = try? FileDescriptor.open(file, [.writeOnly, .create, .exclusive], mode: 0o600) else { return }
        defer { fd.close() }
        try? fd.writeAll(Array(msg("\(now)\n").utf8), file)
    }
}
