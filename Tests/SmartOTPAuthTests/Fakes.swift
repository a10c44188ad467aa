import Foundation
import OTPCore
import SmartCard
import SmartOTPAuth
import TokenStore

/// An in-memory store with the same contract as FileStore (minus the disk).
final class MemoryStore: Store, @unchecked Sendable {
    var records: [UserName: UserRecord] = [:]
    var failReads: StoreError?
    var writes = 0

    func read(_ user: UserName) throws(StoreError) -> UserRecord? {
        if let failReads { throw failReads }
        return records[user]
    }

    func update<R>(_ user: UserName, _ body: (inout UserRecord?, inout Bool) throws -> R) throws -> R {
        if let failReads { throw failReads }
        var r = records[user]
        var changed = false
        let result = try body(&r, &changed)
        if changed { records[user] = r; writes += 1 }
        return result
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
    var prompts: [String] { transcript.filter { $0.hasPrefix("prompt: ") } }
}

/// A reader that answers with a given secret's HMAC, or a scripted result.
final class FakeReader: CardReader {
    var available = true
    var result: (([CardCandidate], [UInt8]) -> TapResult)?
    var taps = 0

    func readerAvailable(filter: String?) -> Bool { available }

    func tap(candidates: [CardCandidate], challenge: [UInt8], filter: String?, timeoutSeconds: Int,
             notice: (TapNotice) -> Void) -> TapResult {
        taps += 1
        return result?(candidates, challenge) ?? .timeout
    }

    /// A card holding `secret` for the first candidate.
    static func card(_ secret: SecretBytes) -> ([CardCandidate], [UInt8]) -> TapResult {
        { candidates, challenge in
            guard let c = candidates.first else { return .failed(.wrongCard) }
            return .response(tokenID: c.tokenID, mac: ChallengeResponse.full(secret: secret, challenge: challenge, algorithm: .sha1))
        }
    }
}

struct FixedClock: Clock {
    var time: Int64
    func now() -> Int64 { time }
}

final class CollectingAudit: AuditLog {
    var events: [AuditEvent] = []
    func record(_ event: AuditEvent) { events.append(event) }
    func debug(_ text: String) {}
}
