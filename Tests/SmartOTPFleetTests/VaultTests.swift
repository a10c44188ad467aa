import Foundation
import OTPCore
import SmartOTPAdmin
import SmartOTPVault
import Testing
import TokenStore

/// smartotpd's sealed secrets and audit chain, without PostgreSQL.
@Suite("smartotpd: sealed secrets, the audit chain, administrators' changes")
struct VaultTests {
    let keyA = KeyFile(bytes: Array(repeating: 1, count: 32))
    let keyB = KeyFile(bytes: Array(repeating: 2, count: 32))

    func record(_ name: String) throws -> UserRecord {
        var r = UserRecord(user: try UserName(name), created: 1)
        r.tokens.append(Token(id: "card", kind: .card, parameters: try OTPParameters(kind: .totp(period: 30)),
                              secret: SecretBytes(Array("12345678901234567890".utf8)), credentialName: "smartotp:\(name)",
                              accessKey: SecretBytes(Array(repeating: 9, count: 16)), created: 1))
        return r
    }

    @Test func theRecordsTextHoldsNoSecretAndOpensOnlyForItsUserAndToken() throws {
        let sealer = Sealer(current: keyA)
        let alice = try record("alice")
        let (text, secrets) = try SealedRecords.seal(alice, with: sealer)
        #expect(!text.contains("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), "the Base32 secret is not in the text")
        #expect(!text.contains("09090909"), "nor the access key")
        #expect(secrets["card"]?.keyID == keyA.id)
        let stripped = try RecordFormat.parse(text, path: "t")
        let opened = try SealedRecords.open(stripped, secrets: secrets, with: sealer)
        #expect(opened.tokens[0].secret.constantTimeEquals(alice.tokens[0].secret))
        #expect(opened.tokens[0].accessKey?.constantTimeEquals(SecretBytes(Array(repeating: 9, count: 16))) == true)

        // Moved to another user, or another token id: it does not open.
        let bob = SealedRecords.stripped(try record("bob"))
        #expect(throws: SealError.forged(user: "bob", token: "card")) { try SealedRecords.open(bob, secrets: secrets, with: sealer) }
        var renamed = stripped
        renamed.tokens[0].id = "card2"
        #expect(throws: SealError.missing(user: "alice", token: "card2")) { try SealedRecords.open(renamed, secrets: secrets, with: sealer) }
        #expect(throws: SealError.forged(user: "alice", token: "card2")) {
            try SealedRecords.open(renamed, secrets: ["card2": secrets["card"]!], with: sealer)
        }
        // A seed written in the clear into the record's text is refused.
        #expect(throws: SealError.inTheClear(user: "alice", token: "card")) { try SealedRecords.open(alice, secrets: secrets, with: sealer) }
        // A sealed value planted under a key the server does not hold, or edited.
        let planted = try Sealer(current: keyB).seal(alice.tokens[0], user: alice.user)
        #expect(throws: SealError.unknownKey(user: "alice", token: "card", keyID: keyB.id)) {
            try SealedRecords.open(stripped, secrets: ["card": planted], with: sealer)
        }
        var edited = secrets["card"]!
        var raw = [UInt8](Data(base64Encoded: edited.box)!)
        raw[20] ^= 1
        edited.box = Data(raw).base64EncodedString()
        #expect(throws: SealError.forged(user: "alice", token: "card")) { try SealedRecords.open(stripped, secrets: ["card": edited], with: sealer) }
        #expect(SealedRecords.isMarker(stripped.tokens[0].secret) && !SealedRecords.isMarker(alice.tokens[0].secret))
        // During a rekey both keys open; the new one seals.
        let both = Sealer(current: keyB, others: [keyA])
        #expect(throws: Never.self) { try SealedRecords.open(stripped, secrets: secrets, with: both) }
        #expect(try both.seal(alice.tokens[0], user: alice.user).keyID == keyB.id)
    }

    @Test func keyFilesAreRefusedWhenOthersCanReadThemOrTheSizeIsWrong() throws {
        let dir = FileManager.default.currentDirectoryPath + "/.build/scratch/vault-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let made = try KeyFile.generate(at: dir + "/k")
        #expect(try KeyFile(path: dir + "/k").id == made.id)
        #expect(throws: KeyFile.Refusal.self) { try KeyFile.generate(at: dir + "/k") }
        chmod(dir + "/k", 0o644)
        #expect(throws: KeyFile.Refusal.self) { try KeyFile(path: dir + "/k") }
        #expect(FileManager.default.createFile(atPath: dir + "/short", contents: Data([1, 2, 3]), attributes: [.posixPermissions: 0o600]))
        #expect(throws: KeyFile.Refusal.self) { try KeyFile(path: dir + "/short") }
        #expect(throws: KeyFile.Refusal.self) { try KeyFile(path: dir + "/missing") }
    }

    func event(_ user: String, _ result: String, at: Int64) -> AuditEntry {
        AuditEntry(at: at, actor: "h1", serial: "0a", role: "host", peer: "192.0.2.1", remoteHost: "198.51.100.7", service: "sshd",
                   user: user, operation: "code", credential: "code", result: result, reason: "")
    }

    @Test func theAuditChainFindsAnEditedDeletedOrSwappedRowAndACutTail() {
        let chain = AuditChain(key: keyA)
        var rows: [AuditChain.Row] = []
        var previous = AuditChain.genesis
        for i in 1...5 {
            let e = event("alice", i == 3 ? "rejected" : "accepted", at: Int64(i))
            let mac = chain.mac(chain: 7, seq: Int64(i), event: e, previous: previous)
            rows.append(.init(chain: 7, seq: Int64(i), event: e, mac: mac))
            previous = mac
        }
        let head = AuditChain.Ends(head: (5, previous), anchor: nil)
        #expect(chain.verify(chain: 7, rows: rows, ends: head) == nil)
        var edited = rows
        edited[2].event.result = "accepted"
        #expect(chain.verify(chain: 7, rows: edited, ends: head)?.contains("row seq 3 ") == true)
        var deleted = rows
        deleted.remove(at: 1)
        #expect(chain.verify(chain: 7, rows: deleted, ends: head)?.contains("seq 2 is missing") == true)
        var swapped = rows
        swapped.swapAt(1, 2)
        #expect(chain.verify(chain: 7, rows: swapped, ends: head) != nil)
        #expect(chain.verify(chain: 7, rows: Array(rows.prefix(4)), ends: head)?.contains("last rows are missing") == true)
        // Another key cannot make a row that passes.
        #expect(AuditChain(key: keyB).verify(chain: 7, rows: rows, ends: head) != nil)
        // Pruned to an anchor: what is left still verifies; an edited anchor does not.
        let anchor = (seq: Int64(2), mac: rows[1].mac, anchorMAC: chain.anchorMAC(chain: 7, seq: 2, mac: rows[1].mac))
        #expect(chain.verify(chain: 7, rows: Array(rows.dropFirst(2)), ends: .init(head: (5, previous), anchor: anchor)) == nil)
        #expect(chain.verify(chain: 7, rows: Array(rows.dropFirst(3)), ends: .init(head: (5, previous), anchor: anchor)) != nil)
        let forged = (seq: Int64(3), mac: rows[2].mac, anchorMAC: anchor.anchorMAC)
        #expect(chain.verify(chain: 7, rows: Array(rows.dropFirst(3)), ends: .init(head: (5, previous), anchor: forged))?.contains("anchor") == true)
    }

    /// Every change travels as its lines and comes back the same change; the outcome's
    /// text carries no secret.
    @Test func adminChangesRoundTripAndApply() throws {
        let alice = try UserName("alice")
        let r = try record("alice")
        let changes: [AdminChange] = [
            .enroll(r.tokens[0]), .removeToken("card"), .removeUser, .passwd(hash: "$y$j9T$abc$def"),
            .recovery(hashes: ["$y$a", "$y$b"]), .resync(token: "code", first: "123456", second: "654321"), .unlock, .place(r),
        ]
        for c in changes {
            var body = c.encode(for: alice)
            defer { ConstantTime.wipe(&body) }
            let back = try AdminChange.decode(verb: c.verb, body: body, user: alice)
            #expect(back.verb == c.verb)
            #expect(back.encode(for: alice) == body)
        }
        #expect(throws: AdminChange.Failure.self) { try AdminChange.decode(verb: "place", body: AdminChange.place(r).encode(for: alice), user: try UserName("bob")) }
        #expect(throws: AdminChange.Failure.self) { try AdminChange.decode(verb: "steal", body: [], user: alice) }
        var unnamed = r.tokens[0]
        unnamed.id = ""
        guard case .enroll(let sent) = try AdminChange.decode(verb: "enroll", body: AdminChange.enroll(unnamed).encode(for: alice), user: alice) else {
            Issue.record("not an enrolment"); return
        }
        #expect(sent.secret.constantTimeEquals(unnamed.secret), "a token the store has not named yet travels too")
        #expect(throws: AdminChange.Failure.self) { try AdminChange.decode(verb: "passwd", body: Array("hash \n".utf8), user: alice) }

        let (enrolled, write) = try AdminChange.enroll(r.tokens[0]).apply(to: r, user: alice, now: 5)
        #expect(enrolled == .token("card2"))
        guard case .write(let two) = write else { Issue.record("enroll wrote nothing"); return }
        #expect(two.tokens.map(\.id) == ["card", "card2"])
        #expect(try AdminChange.unlock.apply(to: nil, user: alice, now: 5).0 == .done(false))
        #expect(try AdminChange.place(r).apply(to: r, user: alice, now: 5).0 == .done(false), "place never overwrites")
        for outcome in [AdminChange.Outcome.token("card2"), .done(true), .counter(42), .counter(nil),
                        .imported(.init(tokenID: "code", newToken: true, recoveryAdded: 2, recoverySkipped: 1, pinSet: false))] {
            #expect(AdminChange.Outcome(text: outcome.text) == outcome)
        }
    }
}
