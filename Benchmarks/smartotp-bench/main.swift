// smartotp-bench: the speed figures of the OTP engine and the store, and a store
// "churn" writer the crash tests kill at random moments.
//
//   smartotp-bench otp                      validations per second (TOTP skew 1, HOTP window 1000)
//   smartotp-bench store --users N          one login's store cost with N users enrolled
//   smartotp-bench churn --store DIR --user U   update U's record forever (killed by tests)
//   smartotp-bench tap --reader R --name CRED [--code PW] [--taps N]   APDUs and time per tap
//   smartotp-bench wait --reader R [--seconds S]   CPU used while waiting for a card that never comes
#if canImport(Glibc)
import Glibc
#endif
import OTPCore
import SmartCard
import TokenStore
import PCSC
import POSIX

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Runs `body` repeatedly for about `seconds` and returns operations per second.
func measure(seconds: Double = 2, _ body: () -> Void) -> (perSecond: Double, iterations: Int) {
    let start = monotonicNanoseconds()
    let budget = UInt64(seconds * 1e9)
    var n = 0
    while monotonicNanoseconds() - start < budget {
        body()
        n += 1
    }
    let elapsed = Double(monotonicNanoseconds() - start) / 1e9
    return (Double(n) / elapsed, n)
}

/// `x` with `decimals` digits after the point (no Foundation here).
func fixed(_ x: Double, _ decimals: Int = 0) -> String {
    guard x.isFinite else { return "-" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let n = Int((x * scale).rounded())
    if decimals == 0 { return String(n) }
    let whole = n / Int(scale)
    var frac = String(abs(n) % Int(scale))
    while frac.count < decimals { frac = "0" + frac }
    return "\(whole).\(frac)"
}

func argument(_ name: String) -> String? {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

func fail(_ text: String) -> Never {
    print("smartotp-bench: \(text)")
    exit(1)
}

let secret = SecretBytes(Array("12345678901234567890".utf8))

func benchOTP() {
    let totp = (try? OTPParameters(kind: .totp(period: 30))) ?? { fail("parameters") }()
    let hotp = (try? OTPParameters(kind: .hotp)) ?? { fail("parameters") }()
    let now: Int64 = 1_700_000_000
    let good = OTP.code(secret: secret, parameters: totp, counter: UInt64(now / 30)) ?? ""
    let v = TOTPValidator(parameters: totp, skew: 1)
    var sink = 0
    let t = measure {
        if case .accepted = v.validate(good, secret: secret, at: now, lastUsedStep: nil) { sink += 1 }
    }
    let h = HOTPValidator(parameters: hotp, window: 1000)
    let worst = measure {
        if case .rejected = h.validate("000000", secret: secret, initialCounter: 0, lastUsedCounter: nil) { sink += 1 }
    }
    let mac = measure { sink &+= Int(HMAC.authenticate(.sha1, key: secret, message: OTP.counterBytes(42))[0]) }
    print("| benchmark | per second | per operation |")
    print("| --- | ---: | ---: |")
    print("| HMAC-SHA1 (one counter) | \(fixed(mac.perSecond)) | \(fixed(1e6 / mac.perSecond, 2)) µs |")
    print("| TOTP validation, skew 1 (3 steps) | \(fixed(t.perSecond)) | \(fixed(1e6 / t.perSecond, 2)) µs |")
    print("| HOTP validation, window 1000 (wrong code: all 1000) | \(fixed(worst.perSecond)) | \(fixed(1e6 / worst.perSecond, 2)) µs |")
    if sink == 0 { print("(no results)") }
}

func makeStore(_ root: String) -> FileStore {
    let store = FileStore(root: root, owner: geteuid())
    do { try store.prepare() } catch { fail("\(error)") }
    return store
}

func benchStore() {
    let counts = (argument("--users") ?? "10,10000,100000").split(separator: ",").compactMap { Int($0) }
    print("| enrolled users | store cost of one login (read, validate, write back) |")
    print("| ---: | ---: |")
    for count in counts {
        var template = Array("/tmp/smartotp-bench-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { fail("mkdtemp") }
        let root = String(cString: dir) + "/store"
        let store = makeStore(root)
        let totp = (try? OTPParameters(kind: .totp(period: 30))) ?? { fail("parameters") }()
        // Enrol `count` users by writing their records directly (fast), then measure one.
        for i in 0..<count {
            guard let user = try? UserName("user\(i)") else { continue }
            let record = UserRecord(user: user, tokens: [Token(id: "code", kind: .code, parameters: totp, secret: secret, created: 1)], created: 1)
            do { try store.update(user) { _ in .write(record) } } catch { fail("\(error)") }
        }
        guard let target = try? UserName("user\(count / 2)") else { fail("name") }
        var step: Int64 = 1_700_000_000 / 30
        let r = measure(seconds: 3) {
            step += 1
            let code = OTP.code(secret: secret, parameters: totp, counter: UInt64(step)) ?? ""
            _ = try? store.update(target) { (rec: UserRecord?) -> RecordChange in
                guard var current = rec, let token = current.tokens.first else { return .keep }
                let v = TOTPValidator(parameters: totp, skew: 1)
                guard case .accepted(let s) = v.validate(code, secret: token.secret, at: step * 30, lastUsedStep: token.lastUsed) else {
                    return .keep
                }
                current.tokens[0].lastUsed = s
                return .write(current)
            }
        }
        print("| \(count) | \(fixed(1e6 / r.perSecond, 1)) µs (\(fixed(r.perSecond)) logins/s) |")
        _ = system("rm -rf '\(String(cString: dir))'")
    }
}

func churn() {
    guard let root = argument("--store"), let name = argument("--user"), let user = try? UserName(name) else {
        fail("churn needs --store DIR --user NAME")
    }
    let store = FileStore(root: root, owner: geteuid())
    while true {
        do {
            try store.update(user) { (r: UserRecord?) -> RecordChange in
                var record = r ?? UserRecord(user: user, created: 1)
                record.countFailure(at: 1, policy: LockPolicy(), isRoot: false)
                // Grow and shrink the record so writes differ in size.
                record.recoveryCodes = Array(repeating: "$y$j9T$churn$churn", count: record.failures % 7)
                return .write(record)
            }
        } catch { fail("\(error)") }
    }
}

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

func benchTap() {
    guard let reader = argument("--reader"), let name = argument("--name") else { fail("tap needs --reader R --name CRED") }
    let taps = Int(argument("--taps") ?? "50") ?? 50
    let code = argument("--code")
    do {
        let context = try PCSCContext()
        var apdus = 0
        let start = monotonicNanoseconds()
        for _ in 0..<taps {
            let session = OATHSession(transport: try context.connect(reader: reader))
            try session.select()
            if let code { try session.validate(key: try session.deriveKey(password: code)) }
            guard let challenge = SecureRandom.bytes(8) else { fail("random") }
            _ = try session.calculate(name: name, challenge: challenge, truncated: false)
            apdus += session.connection.exchanged
        }
        let ms = Double(monotonicNanoseconds() - start) / 1e6 / Double(taps)
        print("| tap (connect, SELECT\(code == nil ? "" : ", VALIDATE"), CALCULATE) | \(apdus / taps) APDUs | \(fixed(ms, 2)) ms |")
    } catch { fail("\(error)") }
}

func benchWait() {
    guard let reader = argument("--reader") else { fail("wait needs --reader R") }
    let seconds = Int(argument("--seconds") ?? "10") ?? 10
    do {
        let context = try PCSCContext()
        var skip: [String] = []
        let cpu0 = cpuSeconds()
        let start = monotonicNanoseconds()
        do {
            _ = try context.waitForCard(filter: reader, skip: &skip, timeoutMs: seconds * 1000) {
                Int(monotonicNanoseconds() / 1_000_000)
            }
            fail("a card is in the reader; take it away for this benchmark")
        } catch .timeout {}
        let wall = Double(monotonicNanoseconds() - start) / 1e9
        let cpu = cpuSeconds() - cpu0
        print("| wait for a card that never comes | \(fixed(wall, 1)) s wall | \(fixed(cpu * 1000, 1)) ms CPU |")
    } catch { fail("\(error)") }
}

switch CommandLine.arguments.dropFirst().first {
case "tap": benchTap()
case "wait": benchWait()
case "otp": benchOTP()
case "store": benchStore()
case "churn": churn()
default:
    print("usage: smartotp-bench otp | store [--users N,N] | churn --store DIR --user U | tap --reader R --name C [--code PW] | wait --reader R")
    exit(64)
}
