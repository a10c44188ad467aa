import Foundation
import OTPCore
import SmartCard
import SmartOTPAuth
import TokenStore
import Verifier

/// An in-memory store with the same contract as FileStore (minus the disk).
final class MemoryStore: Store, @unchecked Sendable {
    var records: [UserName: UserRecord] = [:]
    var failReads: StoreError?
    /// Every write fails with this (a full disk, a file-size limit).
    var failWrites: StoreError?
    var writes = 0
    /// What each commit wrote, in order.
    var history: [UserRecord?] = []

    func read(_ user: UserName) throws(StoreError) -> UserRecord? {
        if let failReads { throw failReads }
        return records[user]
    }

    func withLock<R>(_ user: UserName, _ body: (UserRecord?, (UserRecord?) throws(StoreError) -> Void) throws(StoreError) -> R) throws(StoreError) -> R {
        if let failReads { throw failReads }
        return try body(records[user]) { (next: UserRecord?) throws(StoreError) in
            if let failWrites { throw failWrites }
            records[user] = next
            history.append(next)
            writes += 1
        }
    }
}

final class ScriptedPrompter: Prompter {
    var answers: [String?]
    var transcript: [String] = []

    init(_ answers: [String?]) { self.answers = answers }

    func info(_ text: String) { transcript.append("info: \(text)") }
    func instruct(_ text: String) { transcript.append("instruct: \(text)") }
    func error(_ text: String) { transcript.append("error: \(text)") }
    func askSecret(_ prompt: String) -> String? {
        transcript.append("prompt: \(prompt)")
        guard !answers.isEmpty else { return nil }
        return answers.removeFirst()
    }
    func askSecret(_ prompt: String, after note: String) -> String? {
        transcript.append("note: \(note)")
        return askSecret(prompt)
    }
    var prompts: [String] { transcript.filter { $0.hasPrefix("prompt: ") } }
}

/// A reader that answers with a given secret's HMAC, or a scripted result.
final class FakeReader: CardReader {
    var available = true
    var result: (([RecordSummary.Card], TapAuthority) -> TapResult)?
    var taps = 0
    var lastTimeout: Int?
    /// The last (challenge, response) a card gave: what an eavesdropper would capture.
    var lastExchange: (challenge: [UInt8], mac: [UInt8])?

    func readerAvailable(filter: String?) -> Bool { available }

    func tap(cards: [RecordSummary.Card], filter: String?, timeoutSeconds: Int, authority: TapAuthority,
             notice: (TapNotice) -> Void) -> TapResult {
        taps += 1
        lastTimeout = timeoutSeconds
        let r = result?(cards, authority) ?? .timeout
        if case .response(_, let c, let m) = r { lastExchange = (c, m) }
        return r
    }

    /// A card holding `secret` for the first card: it answers the authority's challenge.
    static func card(_ secret: SecretBytes) -> ([RecordSummary.Card], TapAuthority) -> TapResult {
        { cards, authority in
            guard let c = cards.first else { return .failed(.wrongCard) }
            guard let challenge = authority.challenge(c.tokenID) else { return .failed(.verifierUnavailable) }
            let mac = ChallengeResponse.full(secret: secret, challenge: challenge, algorithm: .sha1)
            return .response(tokenID: c.tokenID, challenge: challenge, mac: mac)
        }
    }

    /// A replayed pair: sends an old (challenge, response) without asking for a new one.
    static func replay(tokenID: String, _ exchange: (challenge: [UInt8], mac: [UInt8])) -> ([RecordSummary.Card], TapAuthority) -> TapResult {
        { _, _ in .response(tokenID: tokenID, challenge: exchange.challenge, mac: exchange.mac) }
    }
}

struct FixedClock: Clock {
    var time: Int64
    func now() -> Int64 { time }
}

final class CollectingAudit: AuditLog {
    var events: [AuditEvent] = []
    func record(_ event: AuditEvent) { events.append(event) }
    var debugLines: [String] = []
    func debug(_ text: String) { debugLines.append(text) }
}
