import ArgumentParser
import Glibc
import OTPCore
import POSIX
import SmartOTPAuth
import SmartOTPSystem
import TokenStore
import Verifier

/// What a user does for themself, through this host's record service as a login would ask
/// it: the setuid helper when not root (which checks the caller is the user, and asks the
/// store or the fleet with root's settings), the store or the fleet client when root. Every
/// step is an attempt on the record, counted and audited like a login.
struct SelfService {
    /// The host's record service, chosen as a login chooses it (`helper`: another setuid
    /// helper than the installed one, for tests).
    let records: SystemRecords

    init(helper: String?) {
        var config = (try? ModuleConfig.load(arguments: []).config) ?? ModuleConfig()
        if let helper { config.helper = helper }
        records = SystemRecords(config)
    }

    /// The caller's own name: a user acts for themself only.
    func me(_ named: String?) throws -> UserName {
        guard let mine = Users.name(of: getuid()) else { throw Failure("your uid \(getuid()) has no name in the user database") }
        if let named, named != mine, getuid() != 0 { throw Failure("you can do this for yourself only (\(mine)); an administrator does it for others") }
        return try userName(named ?? mine)
    }

    func run(_ op: RecordOperation, _ user: UserName) throws -> RecordVerdict {
        do throws(RecordError) { return try records.perform(op, for: user, now: now()).verdict } catch {
            throw Failure("\(error)")
        }
    }

    /// `enroll --self`: the invitation's code, a new secret shown to the phone, then its
    /// first code (or later: `enroll --self --confirm`).
    func enrol(_ named: String?, confirmOnly: Bool) throws {
        let user = try me(named)
        if !confirmOnly {
            let invitation = try readSecret(prompt: "Invitation code: ", fromStdin: isatty(0) != 1, confirm: false)
            guard var secret = SecureRandom.bytes(20) else { throw Failure("the system's random source failed") }
            defer { ConstantTime.wipe(&secret) }
            switch try run(.enrollSelf(invitation: invitation, secret: secret), user) {
            case .accepted(.token(let id)):
                let uri = OTPAuthURI(parameters: try OTPParameters(kind: .totp(period: 30)), secretBase32: Base32.encode(secret),
                                     issuer: "smartotp", account: "\(user)@\(hostName())", counter: 0).format()
                print("Token \(id): scan this with your authenticator app (it holds the secret; clear the screen afterwards).")
                print(uri)
                if let picture = TerminalQR.render(uri) { print(picture, terminator: "") }
            case .locked: throw Failure("your record is locked after too many failed attempts: ask the helpdesk")
            default: throw Failure("that invitation code is not valid (wrong, ended, or used already): ask the helpdesk for another")
            }
        }
        fflush(nil)
        let code: String
        do { code = try readSecret(prompt: "Code from the phone: ", fromStdin: isatty(0) != 1, confirm: false) } catch {
            guard isatty(0) != 1 else { throw error }
            print("The token is pending until you confirm it: smartotp enroll --self --confirm")
            return
        }
        switch try run(.confirmSelf(code: code.filter { $0 != " " }), user) {
        case .accepted(.token(let id)): print("Token \(id) is confirmed: it logs you in from now on.")
        case .locked: throw Failure("your record is locked after too many failed attempts: ask the helpdesk")
        default: throw Failure("that code matches no pending token of yours (a wrong code, or the phone's clock is off): try again with smartotp enroll --self --confirm")
        }
    }

    /// `passwd` by a user: a code of theirs first, then the new simple password.
    func password(_ named: String?, fromStdin: Bool) throws {
        let user = try me(named)
        // Whether a simple password is set: then it is asked too (as passwd(1) asks the old one).
        let hasPassword: Bool
        do throws(RecordError) { hasPassword = try records.summary(user, now: now())?.hasPassword ?? false } catch { throw Failure("\(error)") }
        let code = try readSecret(prompt: "One-time code (or a recovery code): ", fromStdin: fromStdin, confirm: false)
        // On standard input: the code, the current simple password (an empty line when none
        // is set), the new one.
        let current = fromStdin || hasPassword ? try readSecret(prompt: "Current simple password: ", fromStdin: fromStdin, confirm: false) : ""
        let new = try readSecret(prompt: "New simple password: ", fromStdin: fromStdin, confirm: !fromStdin)
        guard new.count >= Passwd.minimumLength else { throw Failure("the simple password needs at least \(Passwd.minimumLength) characters") }
        guard new.utf8.count <= 512 else { throw Failure("the simple password is longer than 512 bytes") }
        switch try run(.passwordSelf(code: code, current: current, new: new), user) {
        case .accepted: print("Simple password changed for \(user).")
        case .replayed: throw Failure("that code was used already: wait for the next one; the simple password is unchanged")
        case .locked: throw Failure("your record is locked after too many failed attempts: ask the helpdesk; the simple password is unchanged")
        case .rejected: throw Failure("that code, or the current simple password, was not accepted; the simple password is unchanged")
        }
    }
}
