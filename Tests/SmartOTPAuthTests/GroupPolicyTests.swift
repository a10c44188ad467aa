import SmartOTPAuth
import Testing
import Verifier

/// `groups=`: pam_duo's convention, and every lookup that fails errs toward asking.
@Suite struct GroupPolicyTests {
    let gids = ["staff": UInt32(50), "dba": 60, "robots": 70]
    func decide(_ groups: String, memberOf: [UInt32]?) throws -> GroupPolicy.Decision {
        let config = try ModuleConfig.parse(["groups=" + groups]).config
        return GroupPolicy.decide(config.groups, memberOf: memberOf, gid: { gids[$0] })
    }

    @Test func membersOfAListedGroupAreAskedOthersIgnored() throws {
        #expect(try decide("staff,dba", memberOf: [100, 60]) == .ask(note: nil))
        guard case .skip(let why) = try decide("staff,dba", memberOf: [100]) else { Issue.record("a non-member was asked"); return }
        #expect(why.contains("staff,dba"))
    }

    @Test func aBangGroupLeavesItsMembersOutEvenWhenListedToo() throws {
        #expect(try decide("staff,!robots", memberOf: [50, 70]) == .skip(why: "member of !robots"))
        #expect(try decide("staff,!robots", memberOf: [50]) == .ask(note: nil))
        // Only ! groups: everyone else is asked.
        #expect(try decide("!robots", memberOf: [100]) == .ask(note: nil))
        #expect(try decide("!robots", memberOf: [70]) == .skip(why: "member of !robots"))
    }

    @Test func whatCannotBeReadAsks() throws {
        guard case .ask(let note?) = try decide("staff", memberOf: nil) else { Issue.record("unreadable groups let the user past"); return }
        #expect(note.contains("could not be read"))
        // A listed group that does not resolve might have held the user.
        guard case .ask(let n2?) = try decide("staff,ghosts", memberOf: [100]) else { Issue.record("an unknown group let the user past"); return }
        #expect(n2.contains("ghosts"))
        // An unknown ! group leaves nobody out.
        guard case .ask(let n3?) = try decide("!ghosts", memberOf: [100]) else { Issue.record("an unknown ! group left a user out"); return }
        #expect(n3.contains("!ghosts"))
        #expect(try decide("staff,ghosts", memberOf: [50]) != .skip(why: ""), "a member is asked")
    }

    @Test func malformedListsAreRefused() {
        for bad in ["", "staff,", ",staff", "!", "a b", "a:b", "!!x", String(repeating: "g", count: 65)] {
            #expect(throws: ConfigError.self, "groups=\(bad)") { try ModuleConfig.parse(["groups=" + bad]) }
        }
        #expect(ModuleConfig().groups.isEmpty)
    }
}
