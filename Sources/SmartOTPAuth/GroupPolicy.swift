import OTPCore

/// One item of `groups=`: a group's name, and whether its members are left out (`!`).
public struct GroupRule: Sendable, Equatable {
    public var name: String
    public var excluded: Bool

    /// `name` or `!name`; nil for an item that cannot be a group's name (empty, over 64
    /// bytes, a space, a comma, a colon or a control character: nothing getgrnam(3) finds).
    public init?(_ item: String) {
        var bytes = Array(item.utf8)
        excluded = bytes.first == UInt8(ascii: "!")
        if excluded { bytes.removeFirst() }
        guard !bytes.isEmpty, bytes.count <= 64,
              bytes.allSatisfy({ $0 > 0x20 && $0 != 0x7F && $0 != UInt8(ascii: ",") && $0 != UInt8(ascii: ":") && $0 != UInt8(ascii: "!") }) else {
            return nil
        }
        name = String(decoding: bytes, as: UTF8.self)
    }

    public init(name: String, excluded: Bool) {
        self.name = name
        self.excluded = excluded
    }
}

/// Who `groups=` asks for a second factor (pam_duo's convention). Decided from the user's
/// groups as the name service gives them (getgrouplist: SSSD and LDAP groups included)
/// and each listed group's id; a lookup that fails always errs toward asking, never toward
/// letting a user past the module:
/// - a member of a `!` group is not asked (PAM_IGNORE);
/// - with groups listed without `!`, only their members are asked, everyone else is not;
/// - with only `!` groups listed, everyone else is asked;
/// - the user's groups unreadable, or a listed group without `!` that does not resolve:
///   the user is asked (the miss is logged); a `!` group that does not resolve leaves
///   nobody out.
public enum GroupPolicy {
    public enum Decision: Equatable, Sendable {
        /// Ask for the second factor; `note` says why, when something could not be read.
        case ask(note: String?)
        /// Leave the user to the rest of the stack (PAM_IGNORE); `why` for the log.
        case skip(why: String)
    }

    /// `gid(name)`: a group's id (nil: it does not resolve); `memberOf`: the user's groups
    /// (nil: unreadable).
    public static func decide(_ rules: [GroupRule], memberOf: [UInt32]?, gid: (String) -> UInt32?) -> Decision {
        guard !rules.isEmpty else { return .ask(note: nil) }
        guard let memberOf else { return .ask(note: "the user's groups could not be read; asked") }
        var missing: [String] = []
        var wanted = false
        var inWanted: String?
        for rule in rules {
            let id = gid(rule.name)
            if id == nil { missing.append((rule.excluded ? "!" : "") + rule.name) }
            if rule.excluded {
                if let id, memberOf.contains(id) { return .skip(why: "member of !" + rule.name) }
            } else {
                wanted = true
                if let id, memberOf.contains(id), inWanted == nil { inWanted = rule.name }
            }
        }
        let note = missing.isEmpty ? nil : "groups= names groups the name service does not know: " + missing.joined(separator: ",")
        if !wanted || inWanted != nil { return .ask(note: note) }
        // A listed group that does not resolve might have held the user: ask.
        if missing.contains(where: { !$0.utf8.begins(with: "!") }) { return .ask(note: note.map { $0 + "; asked" }) }
        return .skip(why: "in none of the groups " + rules.filter { !$0.excluded }.map { $0.name }.joined(separator: ","))
    }
}
