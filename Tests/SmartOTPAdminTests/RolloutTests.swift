import OTPCore
import SmartOTPAdmin
import Testing
import TokenStore
@testable import Verifier

/// Step 3's record changes: a generated token passes nothing until confirmed; temporary
/// codes end by time and by uses; both survive the record's text.
@Suite struct RolloutTests {
    let user = try! UserName("grace")
    let now: Int64 = 1_800_000_000
    let secret = SecretBytes(Array(0..<20))

    func pendingRecord() throws -> UserRecord {
        var t = Token(id: "", kind: .code, parameters: try OTPParameters(kind: .totp(period: 30)), secret: secret, created: now)
        t.pending = true
        guard case (.token, .write(let r)) = try AdminChange.enroll(t).apply(to: nil, user: user, now: now) else {
            throw AdminChange.Failure("no record")
        }
        return r
    }

    func code(at t: Int64) throws -> String {
        try #require(OTP.code(secret: secret, parameters: try OTPParameters(kind: .totp(period: 30)), counter: UInt64(t / 30)))
    }

    @Test func aPendingTokenPassesNothingUntilConfirmed() throws {
        var r = try pendingRecord()
        let parsed = try RecordFormat.parse(RecordFormat.text(r), path: "t")
        #expect(parsed.tokens.first?.pending == true, "pending survives the record's text")
        #expect(CodeCheck(skew: 1, window: 10).apply(try code(at: now), to: &r, now: now) == .rejected)
        #expect(LocalRecords<FileStore>.decide(.code(try code(at: now)), record: &r, policy: Policy(), now: now) == .rejected)
        // A wrong code confirms nothing; the right one does, and is used up.
        guard case (.done(false), .keep) = try AdminChange.confirm(code: "000000").apply(to: r, user: user, now: now) else {
            Issue.record("a wrong code confirmed the token"); return
        }
        guard case (.token(let id), .write(var live)) = try AdminChange.confirm(code: try code(at: now)).apply(to: r, user: user, now: now) else {
            Issue.record("the right code did not confirm"); return
        }
        #expect(live.tokens.first { $0.id == id }?.pending == false)
        #expect(CodeCheck(skew: 1, window: 10).apply(try code(at: now), to: &live, now: now) == .replayed(tokenID: id))
        #expect(LocalRecords<FileStore>.decide(.code(try code(at: now + 30)), record: &live, policy: Policy(), now: now + 30) == .accepted(.token(id)))
    }

    @Test func temporaryCodesEndByTimeAndByUses() throws {
        var r = try pendingRecord()
        let typed = try #require(RecoveryCode.generate())
        let normal = try #require(RecoveryCode.normalise(typed))
        let hash = try #require(PasswordHash.make(normal))
        guard case (.done(true), .write(let w)) = try AdminChange.tempCode(hash: hash, until: now + 3600, uses: 2).apply(to: r, user: user, now: now) else {
            Issue.record("no temporary code added"); return
        }
        r = try RecordFormat.parse(RecordFormat.text(w), path: "t")
        #expect(r.tempCodes == [TempCode(hash: hash, until: now + 3600, uses: 2)], "survives the record's text")
        #expect(TempCodes.active(in: r, now: now) == 1 && TempCodes.active(in: r, now: now + 3600) == 0)
        var late = r
        #expect(LocalRecords<FileStore>.decide(.code(typed), record: &late, policy: Policy(), now: now + 3600) == .rejected, "past its end")
        #expect(late.tempCodes.isEmpty, "an ended code leaves the record")
        #expect(LocalRecords<FileStore>.decide(.code(typed.uppercased()), record: &r, policy: Policy(), now: now) == .accepted(.tempCode))
        #expect(LocalRecords<FileStore>.decide(.code(typed), record: &r, policy: Policy(), now: now + 1) == .accepted(.tempCode))
        #expect(LocalRecords<FileStore>.decide(.code(typed), record: &r, policy: Policy(), now: now + 2) == .rejected, "used up")
        #expect(r.tempCodes.isEmpty)
        // The wire: the server's change and its verdict.
        let change = try AdminChange.decode(verb: "temp-code", body: AdminChange.tempCode(hash: hash, until: 9, uses: 3).encode(for: user), user: user)
        guard case .tempCode(hash, 9, 3) = change else { Issue.record("temp-code did not survive the wire"); return }
        #expect(throws: AdminChange.Failure.self) { try AdminChange.decode(verb: "temp-code", body: Array("hash x\nuntil 9\nuses 0\n".utf8), user: user) }
        let answer = HelperProtocol.encode(Attempt(.accepted(.tempCode), lock: .open))
        #expect(try HelperProtocol.decodeAttempt(answer).verdict == .accepted(.tempCode))
    }

    @Test func anInvitationEnrolsOncePendingAndSelfPasswordNeedsACode() throws {
        let typed = try #require(RecoveryCode.generate())
        let normal = try #require(RecoveryCode.normalise(typed))
        let hash = try #require(PasswordHash.make(normal))
        guard case (.done(true), .write(var r)) = try AdminChange.invite(hash: hash, until: now + 600).apply(to: nil, user: user, now: now) else {
            Issue.record("no invitation"); return
        }
        r = try RecordFormat.parse(RecordFormat.text(r), path: "t")
        #expect(r.invitation == Invitation(hash: hash, until: now + 600) && !r.canProve(at: now), "an invitation alone proves nothing")
        let secret = Array(0..<20).map { UInt8($0) }
        #expect(LocalRecords<FileStore>.decide(.enrollSelf(invitation: "aaaa-bbbb-cccc", secret: secret), record: &r, policy: Policy(), now: now) == .rejected)
        var late = r
        #expect(LocalRecords<FileStore>.decide(.enrollSelf(invitation: typed, secret: secret), record: &late, policy: Policy(), now: now + 600) == .rejected, "ended")
        #expect(LocalRecords<FileStore>.decide(.enrollSelf(invitation: typed, secret: Array(secret.prefix(10))), record: &r, policy: Policy(), now: now) == .rejected, "80 bits")
        guard case .accepted(.token(let id)) = LocalRecords<FileStore>.decide(.enrollSelf(invitation: typed, secret: secret), record: &r, policy: Policy(), now: now) else {
            Issue.record("the invitation did not enrol"); return
        }
        #expect(r.invitation == nil && r.tokens.first { $0.id == id }?.pending == true && !r.canProve(at: now))
        #expect(LocalRecords<FileStore>.decide(.enrollSelf(invitation: typed, secret: secret), record: &r, policy: Policy(), now: now) == .rejected, "once")
        #expect(LocalRecords<FileStore>.decide(.confirmSelf(code: try code(at: now)), record: &r, policy: Policy(), now: now) == .accepted(.token(id)))
        #expect(r.canProve(at: now))
        // A new simple password only after a code; the code is used up.
        #expect(LocalRecords<FileStore>.decide(.passwordSelf(code: "000000", current: "", new: "9753"), record: &r, policy: Policy(), now: now + 30) == .rejected)
        #expect(r.passwordHash == nil)
        #expect(LocalRecords<FileStore>.decide(.passwordSelf(code: try code(at: now + 30), current: "", new: "12"), record: &r, policy: Policy(), now: now + 30) == .rejected, "too short")
        #expect(LocalRecords<FileStore>.decide(.passwordSelf(code: try code(at: now + 30), current: "", new: "9753"), record: &r, policy: Policy(), now: now + 30) == .accepted(.token(id)))
        #expect(r.passwordHash.map { PasswordHash.verify("9753", hash: $0) } == true)
        #expect(LocalRecords<FileStore>.decide(.passwordSelf(code: try code(at: now + 30), current: "9753", new: "0000"), record: &r, policy: Policy(), now: now + 30) == .replayed(tokenID: id))
        // Once a simple password is set, a code alone changes it no more.
        #expect(LocalRecords<FileStore>.decide(.passwordSelf(code: try code(at: now + 60), current: "nope", new: "0000"), record: &r, policy: Policy(), now: now + 60) == .rejected)
        #expect(r.passwordHash.map { PasswordHash.verify("9753", hash: $0) } == true)
        // An enrolled user gets no invitation, and an invitation adds no token to one.
        #expect(throws: AdminChange.Failure.self) { try AdminChange.invite(hash: hash, until: now + 600).apply(to: r, user: user, now: now) }
        var planted = r
        planted.invitation = Invitation(hash: hash, until: now + 600)
        #expect(LocalRecords<FileStore>.decide(.enrollSelf(invitation: typed, secret: secret), record: &planted, policy: Policy(), now: now) == .rejected)
        // A record that once could prove something stays an enrolment when it no longer can.
        var emptied = r
        emptied.tokens.removeAll()
        emptied.passwordHash = nil
        #expect(!emptied.canProve(at: now) && emptied.isEnrolment(at: now))
        // The wire: what the helper and the fleet read.
        let request = HelperProtocol.Request.perform(.enrollSelf(invitation: typed, secret: secret))
        #expect(try HelperProtocol.request(.enrollSelf, lines: HelperProtocol.lines(Array(request.input.utf8))) == request)
        #expect(throws: HelperProtocol.ParseError.self) { try HelperProtocol.request(.enrollSelf, lines: [typed, "MFRGG"]) }
    }

    @Test func malformedTempLinesAreRefused() {
        let head = "smartotp-record 1\nuser grace\ncreated 1\n"
        for bad in ["temp", "temp $y$x", "temp $y$x 10", "temp $y$x 10 0", "temp $y$x ten 1", "temp $y$x 10 1001"] {
            #expect(throws: StoreError.self, "\(bad)") { try RecordFormat.parse(head + bad + "\n", path: "t") }
        }
    }
}
