// fleet-load — the load client of Benchmarks/fleet-bench.sh: many concurrent hosts asking
// smartotpd for verdicts over mutual TLS, one keep-alive connection each (as a busy
// host's client would use), and the racing tests of the fleet step.
//
//   fleet-load throughput --server URL --tls-dir DIR --clients N --seconds S
//                         --users PREFIX --count M --kind valid|wrong --counters FILE
//                         [--threads T]
//   fleet-load race       --server URL --tls-dir DIR --clients N --rounds R --users PREFIX
//   fleet-load wrong      --server URL --tls-dir DIR --clients N --rounds R --users PREFIX
//
// Users PREFIX1…PREFIXM hold one HOTP token with the secret below. Valid codes follow
// each user's counter (kept in FILE between runs); wrong codes are never valid.
import FleetNet
import Foundation
import OTPCore
import SmartOTPAuth
import SmartOTPFleet
import TokenStore

let secret = SecretBytes(Array("12345678901234567890".utf8))  // GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ

func code(_ counter: UInt64) -> String { OTP.hotp(secret: secret, counter: counter, algorithm: .sha1, digits: 6) ?? "" }

var options: [String: String] = [:]
let args = Array(CommandLine.arguments.dropFirst())
guard let mode = args.first else { fatalError("usage: fleet-load throughput|race|wrong --option value …") }
var i = 1
while i + 1 < args.count { options[String(args[i].dropFirst(2))] = args[i + 1]; i += 2 }
func opt(_ k: String, _ d: String? = nil) -> String {
    guard let v = options[k] ?? d else { fatalError("--\(k) is required") }
    return v
}
let servers = ServerURL.list(opt("server")) ?? []
let tlsDir = opt("tls-dir")
let clients = Int(opt("clients", "1")) ?? 1
let prefix = opt("users", "u")
signal(SIGPIPE, SIG_IGN)  // a reset connection is a failed request, not the end
// Full handshakes, as before sessions were kept: the load measures the verifier.
let identity = try TLSIdentity(directory: tlsDir, keepSessions: false)

@Sendable func connect() throws -> FleetConnection {
    try FleetConnection(to: servers[0], identity: identity, deadline: .now() + .seconds(10))
}

/// One verdict: the answer's verdict word ("accepted", "rejected", "locked", …).
@Sendable func ask(_ c: FleetConnection, _ user: String, _ typed: String) throws -> String {
    try request(c, user, typed)
    return try answer(c)
}

/// Sends `typed` for `user` on `c`, without waiting for the answer.
@Sendable func request(_ c: FleetConnection, _ user: String, _ typed: String) throws {
    try c.begin(.POST, "/v1/verify/code/\(user)", body: Array((typed + "\n").utf8), deadline: .now() + .seconds(10))
}

/// The verdict word of the answer to the request `c` has in flight.
@Sendable func answer(_ c: FleetConnection) throws -> String {
    let r = try c.finish(.now() + .seconds(10))
    guard r.status == 200 else { return "http\(r.status)" }
    let line = r.text.split(separator: "\n").first { $0.hasPrefix("verdict ") } ?? "verdict ?"
    return String(line.split(separator: " ")[1])
}

/// Runs `body(index)` on `n` threads released together; waits for all.
func together(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let ready = DispatchSemaphore(value: 0), go = DispatchSemaphore(value: 0), done = DispatchGroup()
    for k in 0..<n {
        done.enter()
        Thread.detachNewThread {
            ready.signal()
            go.wait()
            body(k)
            done.leave()
        }
    }
    for _ in 0..<n { ready.wait() }
    for _ in 0..<n { go.signal() }
    done.wait()
}

final class Box<T>: @unchecked Sendable {
    var value: T
    let lock = NSLock()
    init(_ v: T) { value = v }
    func with<R>(_ f: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return f(&value) }
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

switch mode {
case "throughput":
    let seconds = Double(opt("seconds", "10")) ?? 10
    let count = Int(opt("count", "1000")) ?? 1000
    let valid = opt("kind", "valid") == "valid"
    let countersPath = opt("counters", "/tmp/fleet-load.counters")
    var counters = [UInt64](repeating: 1, count: count + 1)
    if let text = try? String(contentsOfFile: countersPath, encoding: .utf8) {
        for line in text.split(separator: "\n") {
            let p = line.split(separator: " ")
            if p.count == 2, let u = Int(p[0]), let c = UInt64(p[1]), u <= count { counters[u] = c }
        }
    }
    let sharedCounters = Box(counters)
    let latencies = Box([Double]())
    let results = Box([String: Int]())
    let deadline = Date().addingTimeInterval(seconds)
    // The shape of pgbench's own run beside it (-j 2): a few threads, each keeping one
    // request in flight on each of its connections and waiting on all of them with one
    // poll. A thread a connection, each woken for each answer, made the load client's own
    // scheduling a part of what was measured.
    let threads = max(1, min(Int(opt("threads", "2")) ?? 2, clients))
    /// One connection of a thread: its next user and when its request went out.
    struct Slot {
        var connection: FleetConnection?
        var user: Int
        var sent: UInt64 = 0
    }
    together(threads) { t in
        var slots: [Slot] = []
        for k in stride(from: t, to: clients, by: threads) {
            slots.append(Slot(connection: try? connect(), user: k + 1))
        }
        var mine: [Double] = [], tally: [String: Int] = [:]
        tally["connect-failed"] = slots.filter { $0.connection == nil }.count
        var fds = slots.map { pollfd(fd: $0.connection?.descriptor ?? -1, events: Int16(POLLIN), revents: 0) }
        var open = slots.filter { $0.connection != nil }.count
        /// Lets slot `i`'s connection go: it is no longer waited on.
        func drop(_ i: Int) {
            slots[i].connection = nil
            fds[i].fd = -1
            open -= 1
        }
        /// Sends slot `i`'s next code; a connection that fails is dropped.
        func issue(_ i: Int) {
            guard let c = slots[i].connection else { return }
            let u = slots[i].user
            let typed: String
            if valid {
                let n = sharedCounters.with { c -> UInt64 in let v = c[u]; c[u] += 1; return v }
                typed = code(n)
            } else {
                typed = "000000" == code(0) ? "111111" : "000000"
            }
            slots[i].sent = DispatchTime.now().uptimeNanoseconds
            slots[i].user = u + clients > count ? (u - 1) % clients + 1 : u + clients
            do {
                try request(c, "\(prefix)\(u)", typed)
            } catch {
                tally["error", default: 0] += 1
                drop(i)
            }
        }
        for i in slots.indices { issue(i) }
        // After the deadline no request is sent; those in flight are read, not counted. A
        // request unanswered for 10 s is an error and its connection is dropped (finish's
        // own deadline starts only once the socket is readable).
        while open > 0 {
            let counting = Date() < deadline
            let now = DispatchTime.now().uptimeNanoseconds
            let late = now > 10_000_000_000 ? now - 10_000_000_000 : 0
            for i in fds.indices where fds[i].fd >= 0 && slots[i].sent < late {
                if counting { tally["error", default: 0] += 1 }
                drop(i)
            }
            guard open > 0, poll(&fds, nfds_t(fds.count), 100) > 0 else { continue }
            for i in fds.indices where fds[i].revents != 0 {
                fds[i].revents = 0
                guard let c = slots[i].connection else { continue }
                let verdict = (try? answer(c)) ?? "error"
                if counting {
                    mine.append(Double(DispatchTime.now().uptimeNanoseconds - slots[i].sent) / 1e6)
                    tally[verdict, default: 0] += 1
                }
                if counting && verdict != "error" { issue(i) } else { drop(i) }
            }
        }
        latencies.with { $0 += mine }
        results.with { r in for (k, v) in tally where v > 0 { r[k, default: 0] += v } }
    }
    let all = latencies.value.sorted()
    let total = all.count
    var out = "verdicts=\(total) per_second=\(String(format: "%.0f", Double(total) / seconds)) p50_ms=\(String(format: "%.2f", percentile(all, 0.5))) p99_ms=\(String(format: "%.2f", percentile(all, 0.99)))"
    // What the load client itself cost the machine (user and system CPU, all its threads).
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e3 + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e3
    out += " client_cpu_ms_per_verdict=\(String(format: "%.3f", cpu / Double(max(total, 1))))"
    for (k, v) in results.value.sorted(by: { $0.key < $1.key }) { out += " \(k)=\(v)" }
    print(out)
    let lines = sharedCounters.value.enumerated().dropFirst().map { "\($0.offset) \($0.element)" }.joined(separator: "\n")
    try? lines.write(toFile: countersPath, atomically: true, encoding: .utf8)

case "race":
    // Each round: one user's next valid code sent by `clients` connections at once.
    let rounds = Int(opt("rounds", "100")) ?? 100
    let connections = Box((0..<clients).compactMap { _ in try? connect() })
    guard connections.value.count == clients else { fatalError("cannot open \(clients) connections") }
    var multiple = 0, none = 0
    for round in 1...rounds {
        let accepted = Box(0)
        let user = "\(prefix)\(round)"
        let typed = code(1)
        together(clients) { k in
            if (try? ask(connections.value[k], user, typed)) == "accepted" { accepted.with { $0 += 1 } }
        }
        if accepted.value > 1 { multiple += 1 }
        if accepted.value == 0 { none += 1 }
    }
    print("rounds=\(rounds) clients=\(clients) accepted_more_than_once=\(multiple) accepted_never=\(none)")

case "wrong":
    // Each round: `clients` wrong codes at once for a fresh user; the verdicts counted.
    let rounds = Int(opt("rounds", "20")) ?? 20
    let connections = Box((0..<clients).compactMap { _ in try? connect() })
    guard connections.value.count == clients else { fatalError("cannot open \(clients) connections") }
    var rejectedPerRound: [Int] = []
    for round in 1...rounds {
        let rejected = Box(0)
        let user = "\(prefix)\(round)"
        together(clients) { k in
            if (try? ask(connections.value[k], user, "000000")) == "rejected" { rejected.with { $0 += 1 } }
        }
        rejectedPerRound.append(rejected.value)
    }
    print("rounds=\(rounds) clients=\(clients) rejected_min=\(rejectedPerRound.min() ?? 0) rejected_max=\(rejectedPerRound.max() ?? 0)")

default:
    fatalError("unknown mode \(mode)")
}
