import OTPCore
import TokenStore
import Verifier

/// Offline taps on the wire. A fleet host with `offline=tap` sends, with each tap it asks a
/// verdict on, spare challenges of its own (`spare HEX` lines after the tap's three); when
/// the tap is accepted, the verifier — which holds the card's secret — answers each with a
/// verifier of the card's answer to it, and the user's offline epoch. The host keeps that
/// stock: while no verifier answers, a tap on one of those challenges is checked against
/// its verifier, each pair good for one login. The host never holds the secret nor the
/// answers, and neither it nor a local user can make a pair of their own: only the
/// verifier can, and only after an accepted tap.
///
///     offline-card TOKEN-ID DEVICE-ID|- CREDENTIAL-NAME-HEX TOUCH
///     offline-stock EPOCH CREATED
///     offline-pair CHALLENGE-HEX VERIFIER-HEX      (one a spare)
public enum OfflineWire {
    /// The most spares a tap carries: offline logins a host can make between two online ones.
    public static let maxSpares = 16
    static let label = Array("smartotp offline pair 1".utf8)

    /// What the host checks a card's answer to `challenge` against: SHA-256 over a label,
    /// the challenge and the answer (160 bits of HMAC: a fast hash is enough; nothing here
    /// can be guessed).
    public static func verifier(challenge: [UInt8], response: [UInt8]) -> String {
        var input = label
        input.append(UInt8(challenge.count))
        input += challenge
        input += response
        defer { ConstantTime.wipe(&input) }
        return Hex.encode(Digest.hash(.sha256, input))
    }

    /// The spare challenges of a tap request's lines (after TOKEN, CHALLENGE, RESPONSE).
    public static func spares(_ lines: [String]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        for line in lines.dropFirst(3) {
            guard line.utf8.begins(with: "spare "), let bytes = try? Hex.decode(String(line.dropFirst(6))),
                  (8...64).contains(bytes.count) else { continue }
            out.append(bytes)
            if out.count == maxSpares { break }
        }
        return out
    }

    public static func spareLines(_ spares: [[UInt8]]) -> String {
        spares.map { "spare " + Hex.encode($0) + "\n" }.joined()
    }

    /// The verifier's lines for an accepted tap on `card` (none for a card whose applet has
    /// an access key: no VALIDATE can be had offline).
    public static func answerLines(card: Token, spares: [[UInt8]], epoch: Int64, now: Int64) -> String {
        guard card.kind == .card, card.accessKey == nil, !spares.isEmpty, let name = card.credentialName else { return "" }
        var out = "offline-card \(card.id) \(card.deviceID ?? "-") \(Hex.encode(Array(name.utf8))) \(card.touch ? 1 : 0)\n"
        out += "offline-stock \(epoch) \(now)\n"
        for s in spares {
            var response = ChallengeResponse.full(secret: card.secret, challenge: s, algorithm: card.parameters.algorithm)
            out += "offline-pair \(Hex.encode(s)) \(verifier(challenge: s, response: response))\n"
            ConstantTime.wipe(&response)
        }
        return out
    }

    /// A verifier's answer split: what goes to the module (the helper answer) and the
    /// offline lines, if any.
    public static func split(_ answer: String) -> (answer: String, offline: [String]) {
        var kept = "", offline: [String] = []
        for line in answer.splitBytes(UInt8(ascii: "\n")) {
            if line.utf8.begins(with: "offline-") { offline.append(line) } else { kept += line + "\n" }
        }
        return (kept, offline)
    }
}
