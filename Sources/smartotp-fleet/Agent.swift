// smartotp-fleet --agent [--socket PATH]: root's fleet agent. The module (and the setuid
// helper) ask it first (`agent=`, default /run/smartotp/fleet.sock): a login then starts no
// process and, when one is kept from a login before, makes no TLS handshake. Each session is
// what `--session` serves on standard input, here on a connection to the socket; its first
// frame holds the arguments the client would have been started with (NUL-separated), and
// the agent welcomes it (`FleetAgent.welcome`) before any request. Without the welcome the
// module starts the client as it always did: an agent that is down, busy or sent settings
// it cannot serve costs a login nothing but the attempt. See smartotp-fleet(8).
import FleetClient
import FleetNet
import Glibc
import POSIX
import Synchronization
import Verifier

enum FleetAgentServer {
    static let defaultSocket = "/run/smartotp/fleet.sock"
    /// Sessions served at once; one more is closed unwelcomed (the module starts a client).
    static let maxSessions = 64
    /// How long a kept connection may wait for the next login: past it, a new one (which
    /// resumes the TLS session) costs little, and one to a server since gone is not tried.
    static let keptMilliseconds = 20_000  // below smartotpd's 30 s idle timeout
    /// Kept connections for one set of settings: what a burst of logins used at once.
    static let keptPerSettings = 8

    /// How long a stop waits for the sessions being served (a user typing a code).
    static let drainMilliseconds = 30_000

    static let active = Atomic<Int>(0)
    static let stopping = Atomic<Bool>(false)
    static let kept = Mutex<[String: [Kept]]>([:])

    /// A connection kept between logins. Whoever takes it out of `kept` is its only user
    /// (FleetServers is not for two threads at once), hence unchecked.
    struct Kept: @unchecked Sendable {
        let servers: FleetServers
        let since: Int
    }

    static func run(_ words: [String]) -> Never {
        var socketPath = defaultSocket
        var rest = words[...]
        while let word = rest.popFirst() {
            guard word == "--socket", let value = rest.popFirst(), value.hasPrefix("/") else {
                fail("usage: smartotp-fleet --agent [--socket /PATH]", 2)
            }
            socketPath = value
        }
        guard geteuid() == 0 else { fail("the agent runs as root (it holds the host's TLS key)", 2) }
        // Standard input, output and error open (on /dev/null if closed): a session's socket
        // must never become the descriptor that log lines are written to.
        while true {
            let fd = open("/dev/null", O_RDWR | O_CLOEXEC)
            if fd < 0 { fail("/dev/null: \(String(cString: strerror(errno)))") }
            if fd > 2 { close(fd); break }
            _ = fcntl(fd, F_SETFD, 0)
        }
        _ = signal(SIGPIPE, SIG_IGN)
        let listener = listen(at: socketPath)
        openlog("smartotp-fleet", LOG_PID, LOG_AUTHPRIV)
        note(LOG_INFO, "agent listening at \(socketPath)")
        // SIGTERM and SIGINT are taken by a thread of their own (blocked here, before any
        // other thread inherits the mask): the agent stops taking sessions and lets the ones
        // it serves end, so a restart (an upgrade) fails no login in flight.
        var stops = sigset_t()
        sigemptyset(&stops)
        sigaddset(&stops, SIGTERM)
        sigaddset(&stops, SIGINT)
        pthread_sigmask(SIG_BLOCK, &stops, nil)
        let stopper = start {
            var signal: Int32 = 0
            while sigwait(&stops, &signal) != 0 {}
            stopping.store(true, ordering: .sequentiallyConsistent)
            unlink(socketPath)  // new logins start the client at once
            shutdown(listener, Int32(SHUT_RDWR))
            // The sessions served now end, or are given up after drainMilliseconds.
            let until = Clocks.monotonicMilliseconds() + drainMilliseconds
            while active.load(ordering: .sequentiallyConsistent) > 0 && Clocks.monotonicMilliseconds() < until { usleep(20_000) }
            note(LOG_INFO, "agent stopped (signal \(signal)); \(active.load(ordering: .sequentiallyConsistent)) sessions cut short")
            _exit(0)  // no atexit handlers or static destructors under the threads still running
        }
        guard stopper else { fail("cannot start a thread") }
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if stopping.load(ordering: .relaxed) { pause(); continue }
                if errno != EINTR && errno != ECONNABORTED { usleep(10_000) }  // EMFILE and the like: wait, do not spin
                continue
            }
            // Only root's logins (the module in sshd or sudo, the setuid helper) are served.
            // struct ucred: pid, uid, gid.
            var peer: (pid: Int32, uid: UInt32, gid: UInt32) = (0, 1, 1)
            var size = socklen_t(MemoryLayout.size(ofValue: peer))
            guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) == 0, size == 12, peer.uid == 0 else {
                close(fd)
                continue
            }
            // Counted before `stopping` is read: a stop that has seen no session running
            // cannot miss one welcomed after it (the stopper sets, then reads; we add, then read).
            guard active.add(1, ordering: .sequentiallyConsistent).newValue <= maxSessions,
                  !stopping.load(ordering: .sequentiallyConsistent) else {
                active.subtract(1, ordering: .sequentiallyConsistent)
                close(fd)
                continue
            }
            if !start({ session(fd) }) {
                active.subtract(1, ordering: .relaxed)
                close(fd)
            }
        }
    }

    /// The listening socket at `path`: its folder root's and closed to others (made 0700
    /// when missing), the socket 0600. A stale socket is replaced; a live agent's is not.
    static func listen(at path: String) -> Int32 {
        let folder = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !folder.isEmpty {
            try? FileSystem.makeDirectory(folder, mode: 0o700)
            guard let st = try? FileSystem.linkStatus(folder), st.isDirectory, st.owner == 0, st.permissions & 0o022 == 0 else {
                fail("\(folder): the agent's folder must be a directory of root's, not writable by group or others", 2)
            }
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { fail("\(path): too long for a socket's path", 2) }
        withUnsafeMutableBytes(of: &address.sun_path) { b in for (i, c) in bytes.enumerated() { b[i] = c } }
        let length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { fail("socket: \(String(cString: strerror(errno)))") }
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) } }
        if connected == 0 { fail("\(path): an agent already listens there", 2) }
        if let st = try? FileSystem.linkStatus(path) {
            guard st.mode & UInt32(S_IFMT) == UInt32(S_IFSOCK) else { fail("\(path) exists and is not a socket", 2) }
            FileSystem.unlink(path)
        }
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        close(fd)
        // Made 0600 from the start (umask), not opened to others for an instant.
        let mask = umask(0o177)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        umask(mask)
        guard listener >= 0, bound == 0, Glibc.listen(listener, 128) == 0 else { fail("\(path): cannot listen: \(String(cString: strerror(errno)))") }
        return listener
    }

    /// One login: the client's arguments, the welcome, then `--session`'s frames.
    static func session(_ fd: Int32) {
        defer {
            close(fd)
            active.subtract(1, ordering: .relaxed)
        }
        // A login waits on its user between requests (a code being typed): five minutes
        // (sudo's prompt timeout), then the session ends; a module that stops reading is not
        // waited for.
        var wait = timeval(tv_sec: 300, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        wait.tv_sec = 10
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        let hello: [UInt8]
        switch readFrame(from: fd, limit: FleetAgent.helloLimit) {
        case .end: return  // gone before a word
        case .bad(let why): return note(LOG_ERR, "agent: a session's first frame is not one (\(why))")
        case .frame(let bytes): hello = bytes
        }
        let words = hello.split(separator: 0, omittingEmptySubsequences: false).dropLast().map { String(decoding: $0, as: UTF8.self) }
        // What a module sends: `--session`, PAM's service and host, `--` and its settings.
        guard hello.last == 0, words.first == "--session", !words.contains("--version") else {
            return note(LOG_ERR, "agent: a session's first frame is not a client's arguments")
        }
        let command: Command
        let setup: Setup
        do {
            command = try Command.parse(words)
            guard command.session, command.moduleSettings != nil else { throw Command.Failure("not a module's session") }
            setup = try command.setup()
        } catch {
            // The client the module starts instead says the same, in its own words.
            return note(LOG_ERR, "agent: \(error)")
        }
        let key = settingsKey(setup)
        let https: FleetServers
        if let servers = take(key) {
            https = servers
            // Kept since an earlier login: its server may have gone silent meanwhile.
            https.keptFromEarlier = true
        } else {
            do { https = try FleetServers(setup.servers, tlsDirectory: setup.identity) } catch { return note(LOG_ERR, "agent: \(error)") }
        }
        put(fd, Frame.encode(Array(FleetAgent.welcome.utf8)))
        if let why = command.serve(setup.client(https), on: fd, answering: fd) {
            return note(LOG_ERR, "agent: \(why)")
        }
        give(key, https)
    }

    /// What a kept connection may serve: the same verifiers, the same identity folder, and
    /// the same files in it (a renewed certificate or a new CA is a new key).
    static func settingsKey(_ setup: Setup) -> String {
        var key = setup.servers.map { "\($0)" }.joined(separator: ",") + "|" + setup.identity
        for file in ["ca.pem", "cert.pem", "key.pem"] {
            var st = stat()
            guard stat(setup.identity + "/" + file, &st) == 0 else { key += "|-"; continue }
            key += "|\(st.st_dev):\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec):\(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)"
        }
        return key
    }

    /// A kept connection for `key` that is young enough and still open; older ones go.
    static func take(_ key: String) -> FleetServers? {
        let t = Clocks.monotonicMilliseconds()
        while let entry = kept.withLock({ kept -> Kept? in kept[key]?.popLast() }) {
            if t - entry.since < keptMilliseconds, entry.servers.keepable() { return entry.servers }
        }
        return nil
    }

    /// Keeps `servers`' connection for the next login, if it is open; the oldest kept ones,
    /// and every set of settings' stale ones, go.
    static func give(_ key: String, _ servers: FleetServers) {
        guard servers.keepable() else { return }
        let t = Clocks.monotonicMilliseconds()
        let dropped = kept.withLock { kept -> [Kept] in
            var gone: [Kept] = []
            for (k, list) in kept {
                let young = list.filter { t - $0.since < keptMilliseconds }
                if young.count < list.count { gone += list.filter { t - $0.since >= keptMilliseconds } }
                kept[k] = young.isEmpty ? nil : young
            }
            var list = kept[key] ?? []
            list.append(Kept(servers: servers, since: t))
            if list.count > keptPerSettings { gone.append(list.removeFirst()) }
            kept[key] = list
            return gone
        }
        _ = dropped  // closed here, outside the lock
    }

    /// Runs `body` on a detached thread of its own.
    static func start(_ body: @escaping () -> Void) -> Bool {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { raw in
            if let raw { Unmanaged<ThreadBody>.fromOpaque(raw).takeRetainedValue().body() }
            return nil
        }, box)
        if rc != 0 { Unmanaged<ThreadBody>.fromOpaque(box).release() }
        return rc == 0
    }
}

/// What a thread of the agent runs (pthread_create's argument).
final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}
