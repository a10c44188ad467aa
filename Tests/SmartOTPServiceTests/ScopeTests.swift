import SmartOTPService
import Testing
import Verifier

/// `scope` lines: which users each host may ask about.
@Suite("smartotpd: host scopes") struct ScopeTests {
    static let groups: [String: Set<String>] = ["alice": ["dba"], "bob": ["web", "staff"]]

    @Test func aHostOutOfScopeIsRefusedAuditedAndCountsAgainstNoOne() async throws {
        let fleet = try Fleet(config: Fleet.config("scope = h1 dba\nscope = h* web"), groupsOf: { ScopeTests.groups[$0] })
        try await fleet.enroll("alice")
        try await fleet.enroll("bob")
        // h1's line is the first (dba): h* (web) is not read for it; h2 matches only h* (web).
        #expect(await fleet.verdict(.code, "alice", "000000", from: "h1").verdict == "rejected")
        #expect(await fleet.verdict(.code, "bob", "000000", from: "h1").status == 403, "the first matching line decides")
        let refused = await fleet.verdict(.code, "alice", "000000", from: "h2")
        #expect(refused.status == 403 && refused.text.contains("may not ask about alice"), "\(refused.text)")
        #expect(await fleet.verdict(.summary, "alice", from: "h2").status == 403, "not even whether she is enrolled")
        #expect(await fleet.verdict(.code, "bob", "000000", from: "h2").verdict == "rejected")
        // Audited in chain 0 with the user's name; alice's count holds h1's failure alone.
        let rows = fleet.ledger.withContents { $0.audit }.filter { $0.event.result == "out-of-scope" }
        #expect(rows.count == 3 && rows.filter { $0.event.user == "alice" }.allSatisfy { $0.event.actor == "h2" && $0.chain == 0 }, "\(rows)")
        #expect(try await fleet.record("alice")?.failures == 1)
        // A user the verifier's name service does not know is in no group.
        #expect(await fleet.verdict(.code, "carol", "000000", from: "h3").status == 403)
    }

    @Test func aStarLineAndNoLineLetEveryoneThrough() async throws {
        let open = try Fleet(groupsOf: { _ in nil })
        try await open.enroll("alice")
        #expect(await open.verdict(.code, "alice", "000000", from: "h2").verdict == "rejected", "no scope line: as before")
        let star = try Fleet(config: Fleet.config("scope = h1 dba\nscope = * *"), groupsOf: { _ in nil })
        try await star.enroll("alice")
        #expect(await star.verdict(.code, "alice", "000000", from: "h3").verdict == "rejected")
        // A host that matches no line asks about no one.
        let narrow = try Fleet(config: Fleet.config("scope = h1 *"), groupsOf: { _ in nil })
        try await narrow.enroll("alice")
        #expect(await narrow.verdict(.code, "alice", "000000", from: "h2").status == 403)
    }

    @Test func scopeLinesAreCheckedWhenRead() {
        for bad in ["h1", "h1 dba extra", "h1 dba,", "h1 ,dba", "h1 db:a"] {
            #expect(throws: ConfigError.self, "\(bad)") { try ServerConfig.parse(Fleet.required + "scope = \(bad)\n", path: "t") }
        }
        let two = try? ServerConfig.parse(Fleet.required + "scope = web* web,staff\nscope = db* dba\n", path: "t")
        #expect(two?.scopes == [HostScope(pattern: "web*", groups: ["web", "staff"]), HostScope(pattern: "db*", groups: ["dba"])])
    }
}
