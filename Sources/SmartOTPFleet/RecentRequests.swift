import Verifier

/// The verdicts a user's row remembers by request id. A host's fleet client sends one id
/// with a request and the same id to every replica it tries; when its first answer is
/// lost (the replica's deadline passed after the transaction committed, the connection
/// dropped), the next replica finds the id and answers the verdict already committed
/// instead of counting the attempt again, or calling the code replayed.
///
/// Kept in the row's `recent_requests` column as `ID<TAB>VERDICT<TAB>LOCK` lines (the
/// values of the helper answer's `verdict` and `lock` lines: no secret), newest last, at
/// most `kept`: a retry comes within one login's seconds.
public enum RecentRequests {
    public static let kept = 4

    /// A request id as the fleet client makes it: 16-64 characters of [0-9A-Za-z-].
    public static func isValid(_ id: String) -> Bool {
        (16...64).contains(id.utf8.count) && id.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D
        }
    }

    /// The verdict committed for `id`, if the row remembers it.
    public static func attempt(_ stored: String, id: String) -> Attempt? {
        guard isValid(id) else { return nil }
        for line in stored.split(separator: "\n").reversed() {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 3, f[0] == id else { continue }
            return try? HelperProtocol.decodeAttempt(HelperProtocol.version + "\nverdict \(f[1])\nlock \(f[2])\n")
        }
        return nil
    }

    /// `stored` with `attempt` remembered for `id` (the oldest beyond `kept` forgotten).
    public static func adding(_ stored: String, id: String, _ attempt: Attempt) -> String {
        guard isValid(id) else { return stored }
        let lines = HelperProtocol.encode(attempt).split(separator: "\n").dropFirst()
        guard lines.count == 2 else { return stored }
        let value = { (l: Substring) in l.split(separator: " ", maxSplits: 1).dropFirst().first.map(String.init) ?? "" }
        let entry = "\(id)\t\(value(lines[lines.startIndex]))\t\(value(lines[lines.startIndex + 1]))"
        let kept = stored.split(separator: "\n").suffix(kept - 1).map(String.init)
        return (kept + [entry]).joined(separator: "\n")
    }
}
