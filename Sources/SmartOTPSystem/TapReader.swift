import OTPCore
import POSIX
import PCSC
import SmartCard
import SmartOTPAuth
import Verifier

/// The tap: waits for one of the user's cards on any reader, then SELECT, the device id,
/// VALIDATE when the applet is protected, and CALCULATE with the verifier's challenge.
/// Generic over where cards come from (`CardSlots`), so that the waiting, skipping and
/// deadline logic is tested with fakes; `PCSCTapReader` is the one the module uses.
public struct TapReader<Slots: CardSlots>: CardReader {
    /// Opens the slots (a PC/SC context) for one tap.
    let open: () throws(CardError) -> Slots
    /// Milliseconds on a monotonic clock.
    let now: () -> Int
    /// How often the user hears how long is left, in seconds.
    public var reminderInterval = 10
    /// The slots `readerAvailable` opened, kept for the tap that follows: one PC/SC
    /// context a login, not two (card-bench: the second context's connect, establish and
    /// release were a third of the IPC to pcscd before the card was spoken to).
    let kept = Kept()

    final class Kept {
        var slots: Slots?
    }

    public init(open: @escaping () throws(CardError) -> Slots, now: @escaping () -> Int) {
        self.open = open
        self.now = now
    }

    public func readerAvailable(filter: String?) -> Bool {
        guard let slots = try? open(), let names = try? slots.readers(matching: filter) else { return false }
        kept.slots = slots
        return !names.isEmpty
    }

    public func tap(cards: [RecordSummary.Card], filter: String?, timeoutSeconds: Int, authority: TapAuthority,
                    notice: (TapNotice) -> Void) -> TapResult {
        let slots: Slots
        if let opened = kept.slots {
            slots = opened
            kept.slots = nil
        } else {
            do { slots = try open() } catch { return .unavailable(error) }
        }
        let deadline = now() + timeoutSeconds * 1000
        var skip: [String] = []
        var lastError: CardError?
        while true {
            let remaining = deadline - now()
            if remaining <= 0 { return lastError.map { .failed($0) } ?? .timeout }
            let chunk = min(remaining, reminderInterval * 1000)
            let reader: String
            do {
                reader = try slots.waitForCard(filter: filter, skip: &skip, timeoutMs: chunk, now: now)
            } catch .timeout {
                let left = (deadline - now() + 500) / 1000
                if left > 0 { notice(.secondsLeft(left)) }
                continue
            } catch {
                return error == .noService ? .unavailable(error) : .failed(error)
            }
            switch answer(reader: reader, slots: slots, cards: cards, authority: authority, notice: notice) {
            case .success(let result):
                return result
            case .failure(.verifierUnavailable):
                return .failed(.verifierUnavailable)
            case .failure(let error):
                // Not this card, or it left too early: wait for another tap on that reader.
                lastError = error
                if !skip.containsBytes(of: reader) { skip.append(reader) }
                if error == .wrongCard { notice(.wrongCard) }
            }
        }
    }

    /// One presented card: SELECT, match the device id, VALIDATE if protected, then the
    /// verifier's challenge in CALCULATE. The challenge is asked for only now, with the
    /// card on the reader, so that it can expire soon.
    func answer(reader: String, slots: Slots, cards: [RecordSummary.Card], authority: TapAuthority,
                notice: (TapNotice) -> Void) -> Result<TapResult, CardError> {
        do {
            let session = OATHSession(transport: try slots.connect(reader: reader))
            let info = try session.select()
            guard let card = cards.first(where: { card in card.deviceID.map { $0.equals(info.deviceID) } ?? true }) else {
                return .failure(.wrongCard)
            }
            if info.challenge != nil {
                // Our half of VALIDATE is a challenge the verifier issued (and uses up):
                // it answers no other. The tap then asks for a fresh one.
                guard let ours = authority.challenge(card.tokenID) else { return .failure(.verifierUnavailable) }
                try session.validate(ours: ours) { cardChallenge, ours in
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

/// The tap the module uses: pcscd through libpcsclite.
public typealias PCSCTapReader = TapReader<PCSCContext>

extension TapReader where Slots == PCSCContext {
    public init() {
        self.init(open: { () throws(CardError) in try PCSCContext() }, now: Clocks.monotonicMilliseconds)
    }
}
