#if canImport(Glibc)
import Glibc
#endif
import OTPCore
import SmartCard
import TokenStore

/// The system clock.
public struct SystemClock: Clock {
    public init() {}
    public func now() -> Int64 { Int64(time(nil)) }

    /// Milliseconds on the monotonic clock, for deadlines that must not jump with the wall clock.
    public static func monotonicMilliseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int(ts.tv_sec) * 1000 + Int(ts.tv_nsec) / 1_000_000
    }
}

/// The system's user database.
public enum SystemUsers {
    /// The uid of `name` through getpwnam_r(3); nil when there is no such user.
    public static func uid(of name: String) -> UInt32? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.pw_uid
    }

    /// Whether `user` is root (uid 0, whatever the name).
    public static func isRoot(_ user: UserName) -> Bool { uid(of: user.value) == 0 }
}

/// The real card reader: pcscd through libpcsclite, YKOATH on the card.
public struct PCSCTapReader: CardReader {
    /// How often the user hears how long is left, in seconds.
    public var reminderInterval = 10

    public init() {}

    public func readerAvailable(filter: String?) -> Bool {
        guard let context = try? PCSCContext(), let names = try? context.readers(matching: filter) else { return false }
        return !names.isEmpty
    }

    public func tap(cards: [RecordSummary.Card], filter: String?, timeoutSeconds: Int, authority: TapAuthority,
                    notice: (TapNotice) -> Void) -> TapResult {
        let context: PCSCContext
        do { context = try PCSCContext() } catch { return .unavailable(error) }
        let deadline = SystemClock.monotonicMilliseconds() + timeoutSeconds * 1000
        var skip = Set<String>()
        var lastError: CardError?
        while true {
            let remaining = deadline - SystemClock.monotonicMilliseconds()
            if remaining <= 0 { return lastError.map { .failed($0) } ?? .timeout }
            let chunk = min(remaining, reminderInterval * 1000)
            let reader: String
            do {
                reader = try context.waitForCard(filter: filter, skip: &skip, timeoutMs: chunk,
                                                 now: SystemClock.monotonicMilliseconds)
            } catch .timeout {
                let left = (deadline - SystemClock.monotonicMilliseconds() + 500) / 1000
                if left > 0 { notice(.secondsLeft(left)) }
                continue
            } catch {
                if error == .noService { return .unavailable(error) }
                lastError = error
                return .failed(error)
            }
            switch answer(reader: reader, context: context, cards: cards, authority: authority, notice: notice) {
            case .success(let result):
                return result
            case .failure(let error):
                // Not this card, or it left too early: wait for another tap on that reader.
                lastError = error
                skip.insert(reader)
                if error == .wrongCard { notice(.wrongCard) }
            }
        }
    }

    /// One presented card: SELECT, match the device id, VALIDATE if protected, then the
    /// verifier's challenge in CALCULATE.
    func answer(reader: String, context: PCSCContext, cards: [RecordSummary.Card], authority: TapAuthority,
                notice: (TapNotice) -> Void) -> Result<TapResult, CardError> {
        do {
            let card = try context.connect(reader: reader)
            let session = OATHSession(transport: card)
            let info = try session.select()
            guard let card = cards.first(where: { $0.deviceID == nil || $0.deviceID == info.deviceID }) else {
                return .failure(.wrongCard)
            }
            if info.challenge != nil {
                try session.validate { cardChallenge, ours in
                    authority.access(card.tokenID, cardChallenge, ours).map { ($0.response, $0.expected) }
                }
            }
            guard let challenge = authority.challenge(card.tokenID) else { return .failure(.verifierUnavailable) }
            if card.touch { notice(.touchRequired) }
            let value = try session.calculate(name: card.credentialName, challenge: challenge, truncated: false)
            guard case .full(_, let mac) = value else { return .failure(.malformedResponse("no full response")) }
            return .success(.response(tokenID: card.tokenID, challenge: challenge, mac: mac))
        } catch {
            return .failure(error)
        }
    }
}
