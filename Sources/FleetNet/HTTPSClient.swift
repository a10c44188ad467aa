import CNIOBoringSSL
import Glibc
import OTPCore
import POSIX
import SmartOTPFleet

// The fleet's HTTPS client: blocking sockets and OpenSSL's libssl, no event loop. It runs
// in smartotp-fleet, a process started for every fleet login, where what counted was
// starting: SwiftNIO's generic pipeline made the Swift runtime build type metadata at
// every start (fleet-bench: a third of the client's time before a byte was sent). With
// libssl the client also keeps TLS 1.3 sessions (`TLSIdentity.sessions`): the next login
// resumes, without the certificate exchange and its signatures.

/// An HTTPS response, whole.
public struct FleetResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    public var text: String { String(decoding: body, as: UTF8.self) }
}

public struct FleetClientError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// The two methods the fleet's API uses.
public enum HTTPMethod: String, Sendable {
    case GET, POST
}

/// A moment on the monotonic clock: when a request must have been answered.
public struct FleetDeadline: Comparable, Sendable {
    let nanoseconds: Int64

    public static func now() -> FleetDeadline {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return FleetDeadline(nanoseconds: Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec))
    }

    public static func + (d: FleetDeadline, t: Duration) -> FleetDeadline {
        let (s, attoseconds) = t.components
        return FleetDeadline(nanoseconds: d.nanoseconds + s * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    public static func < (a: FleetDeadline, b: FleetDeadline) -> Bool { a.nanoseconds < b.nanoseconds }

    /// What is left, in milliseconds for poll(2) (0 once passed).
    public var millisecondsLeft: Int32 {
        let left = (nanoseconds - Self.now().nanoseconds + 999_999) / 1_000_000
        return Int32(max(0, min(left, Int64(Int32.max))))
    }
}

/// The client identity a host or an administrator presents: `DIR/ca.pem` (the CA that
/// signed the servers' certificates), `DIR/cert.pem` and `DIR/key.pem` (root-only). Shared
/// by the connections of one process (libssl's context is safe to share).
public final class TLSIdentity: @unchecked Sendable {
    let context: OpaquePointer
    /// Where the TLS sessions to resume are kept: `DIR/sessions`, 0700, one file a server
    /// and certificate (nil: none kept; a host that joins, the benchmark's clients).
    let sessions: String?
    /// The certificate's fingerprint, in the sessions' names: a session made with a
    /// certificate since renewed is never offered (the server would resume the old one).
    let certificateTag: String

    /// The CA only, no certificate of this host's own: a host that joins has none yet.
    public init(trusting directory: String) throws {
        context = try Self.context(trusting: directory + "/ca.pem")
        sessions = nil
        certificateTag = ""
    }

    /// `keepSessions`: resume TLS sessions from one process to the next (smartotp-fleet);
    /// a session's file holds its key, so it is kept only where the key is (root-only).
    public init(directory: String, keepSessions: Bool = true) throws {
        try Self.checkProtected(directory)
        let ctx: OpaquePointer
        do { ctx = try Self.context(trusting: directory + "/ca.pem") } catch {
            throw FleetClientError("cannot load the TLS identity in \(directory) (ca.pem, cert.pem, key.pem): \(error)")
        }
        guard SSL_CTX_use_certificate_chain_file(ctx, directory + "/cert.pem") == 1,
              SSL_CTX_use_PrivateKey_file(ctx, directory + "/key.pem", SSL_FILETYPE_PEM) == 1,
              SSL_CTX_check_private_key(ctx) == 1 else {
            let why = Self.openSSLError()
            SSL_CTX_free(ctx)
            throw FleetClientError("cannot load the TLS identity in \(directory) (ca.pem, cert.pem, key.pem): \(why)")
        }
        context = ctx
        // The certificate loaded (not the file read again: a renewal may be replacing it)
        // and the CA trusted: a session is resumed only under both as they were.
        var certificate: [UInt8] = []
        if let x509 = SSL_CTX_get0_certificate(ctx) {
            let n = i2d_X509(x509, nil)
            if n > 0 {
                certificate = [UInt8](repeating: 0, count: Int(n))
                certificate.withUnsafeMutableBufferPointer { b in
                    var p: UnsafeMutablePointer<UInt8>? = b.baseAddress
                    _ = i2d_X509(x509, &p)
                }
            }
        }
        let ca = (try? FileSystem.read(directory + "/ca.pem", limit: 1 << 20, followingLinks: true)) ?? nil
        certificateTag = Hex.encode(Array(Self.sha256(certificate + Self.sha256(ca ?? [])).prefix(8)))
        sessions = keepSessions && !certificate.isEmpty ? Self.sessionFolder(directory + "/sessions") : nil
    }

    deinit { SSL_CTX_free(context) }

    static func context(trusting caFile: String) throws -> OpaquePointer {
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw FleetClientError("TLS: \(openSSLError())") }
        guard SSL_CTX_set_min_proto_version(ctx, UInt16(TLS1_2_VERSION)) == 1, SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else {
            let why = openSSLError()
            SSL_CTX_free(ctx)
            throw FleetClientError("cannot load the fleet's CA in \(caFile): \(why)")
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        // TLS 1.3 sends a session after the handshake: libssl hands it to this callback
        // (while a response is read), which gives it to its connection's box.
        _ = SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE)
        SSL_CTX_sess_set_new_cb(ctx) { ssl, session in
            guard let ssl, let session, let p = SSL_get_ex_data(ssl, SessionBox.index) else { return 0 }
            Unmanaged<SessionBox>.fromOpaque(p).takeUnretainedValue().take(session)
            return 1
        }
        return ctx
    }

    /// The folder and its key must be this process's user's or root's, the folder not
    /// writable by group or others and the key readable by nobody else, as sshd demands of
    /// a host key: a key others can read is a host certificate anyone can use.
    static func checkProtected(_ directory: String) throws {
        for (path, forbidden) in [(directory, mode_t(0o022)), (directory + "/key.pem", mode_t(0o077))] {
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }  // missing: the load below says so
            guard st.st_uid == 0 || st.st_uid == geteuid(), st.st_mode & forbidden == 0 else {
                throw FleetClientError("refusing the TLS identity in \(directory): \(path) must be owned by root and " +
                                       (forbidden == 0o022 ? "not writable by group or others" : "readable by nobody else (chmod 600)"))
            }
        }
    }

    /// `path`, made 0700 when missing; nil (no sessions kept) unless it is a folder of this
    /// process's user that nobody else can enter.
    static func sessionFolder(_ path: String) -> String? {
        _ = mkdir(path, 0o700)
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, st.st_uid == geteuid(), st.st_mode & 0o077 == 0 else { return nil }
        return path
    }

    /// The file of `server`'s session for this certificate.
    func sessionFile(_ server: ServerURL) -> String? {
        guard let sessions else { return nil }
        return sessions + "/" + Self.sessionPrefix(server) + certificateTag
    }

    /// The start of every session file's name for `server` (whatever the certificate).
    static func sessionPrefix(_ server: ServerURL) -> String {
        String(server.address.description.utf8.map { b -> Character in
            let c = Character(Unicode.Scalar(b))
            return c.isLetter || c.isNumber || c == "." || c == "-" ? c : "_"
        }) + "-"
    }

    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var n: UInt32 = 0
        _ = EVP_Digest(bytes, bytes.count, &digest, &n, EVP_sha256(), nil)
        return digest
    }

    /// libssl's queue of errors, as words (and emptied).
    static func openSSLError() -> String {
        var words: [String] = []
        while case let e = ERR_get_error(), e != 0 {
            if let reason = ERR_reason_error_string(e) { words.append(String(cString: reason)) }
        }
        return words.isEmpty ? "no detail" : words.joined(separator: "; ")
    }
}

/// The newest session the server gave a connection (owned: freed with the box).
final class SessionBox {
    /// Where an SSL object points to its box (SSL_get_ex_data).
    static let index = SSL_get_ex_new_index(0, nil, nil, nil, nil)
    private(set) var session: OpaquePointer?

    func take(_ s: OpaquePointer) {
        if let old = session { SSL_SESSION_free(old) }
        session = s
    }

    deinit { if let session { SSL_SESSION_free(session) } }
}

/// One HTTPS connection to one server, used for requests one after another (keep-alive).
/// Blocking, each step bounded by its deadline.
public final class FleetConnection {
    public let server: ServerURL
    let fd: Int32
    let ssl: OpaquePointer
    /// Whether TLS resumed a session kept from an earlier process (no certificates sent).
    public let resumed: Bool
    let sessionFile: String?
    var sessionSaved = false
    let newSession = SessionBox()
    /// Whether any request on this connection was answered.
    var answered = false
    /// Bytes read past the end of the last response.
    var pending: [UInt8] = []
    /// A request `begin` sent whose response `finish` has not read: one at a time, so an
    /// answer is never paired with the wrong request.
    var inFlight = false

    /// Connects and completes the TLS handshake, or throws, by `deadline`.
    public init(to server: ServerURL, identity: TLSIdentity, deadline: FleetDeadline) throws {
        self.server = server
        fd = try Self.connect(server, deadline: deadline)
        guard let ssl = SSL_new(identity.context) else {
            Glibc.close(fd)
            throw FleetClientError("\(server): TLS: \(TLSIdentity.openSSLError())")
        }
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        SSL_set_ex_data(ssl, SessionBox.index, Unmanaged.passUnretained(newSession).toOpaque())
        // The server's certificate must name what was asked for: its address (written as
        // an address: inet_pton's forms only), or its name. Either check must be set.
        let host = server.address.host
        var scratch = in6_addr()
        let isAddress = inet_pton(AF_INET, host, &scratch) == 1 || inet_pton(AF_INET6, host, &scratch) == 1
        let checked = isAddress
            ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1
            : SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1
        guard checked else {
            SSL_free(ssl)
            Glibc.close(fd)
            throw FleetClientError("\(server): cannot check the server's certificate against \(host)")
        }
        sessionFile = identity.sessionFile(server)
        var offered = false
        if let file = sessionFile, let der = (try? FileSystem.read(file, limit: 1 << 16, followingLinks: false)) ?? nil, !der.isEmpty {
            der.withUnsafeBufferPointer { b in
                var p: UnsafePointer<UInt8>? = b.baseAddress
                if let session = d2i_SSL_SESSION(nil, &p, b.count) {
                    offered = SSL_set_session(ssl, session) == 1
                    SSL_SESSION_free(session)
                }
            }
        }
        do {
            try Self.io(ssl, fd, deadline, server) { SSL_connect($0) }
        } catch {
            // A kept session is not offered again after a failure: the next login shows
            // its certificate (a refusal for the host itself is the same either way).
            if offered, let file = sessionFile { FileSystem.unlink(file) }
            SSL_free(ssl)
            Glibc.close(fd)
            throw error
        }
        resumed = SSL_session_reused(ssl) == 1
        sessionSaved = resumed
    }

    deinit {
        SSL_free(ssl)
        Glibc.close(fd)
    }

    public func close() { shutdown(fd, Int32(SHUT_RDWR)) }

    /// A TCP connection to the first of the server's addresses that accepts by `deadline`.
    static func connect(_ server: ServerURL, deadline: FleetDeadline) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        // An address is taken as written; a name goes to the system's resolver (its own
        // timeouts, resolv.conf's, not this deadline: fleet.md recommends addresses).
        var scratch = in6_addr()
        let numeric = inet_pton(AF_INET, server.address.host, &scratch) == 1 || inet_pton(AF_INET6, server.address.host, &scratch) == 1
        hints.ai_flags = AI_NUMERICSERV | (numeric ? AI_NUMERICHOST : 0)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(server.address.host, String(server.address.port), &hints, &list)
        guard rc == 0, let list else { throw FleetClientError("\(server): cannot connect: \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(list) }
        var why = "no address"
        var next: UnsafeMutablePointer<addrinfo>? = list
        while let a = next {
            next = a.pointee.ai_next
            let fd = socket(a.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { why = String(cString: strerror(errno)); continue }
            if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) != 0 {
                guard errno == EINPROGRESS else { why = String(cString: strerror(errno)); Glibc.close(fd); continue }
                guard wait(fd, POLLOUT, deadline) else { why = "no answer in time"; Glibc.close(fd); continue }
                var error: Int32 = 0
                var size = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size)
                guard error == 0 else { why = String(cString: strerror(error)); Glibc.close(fd); continue }
            }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return fd
        }
        throw FleetClientError("\(server): cannot connect: \(why)")
    }

    /// Waits until `fd` is ready for `events`; false once `deadline` passes.
    static func wait(_ fd: Int32, _ events: Int32, _ deadline: FleetDeadline) -> Bool {
        while true {
            var p = pollfd(fd: fd, events: Int16(events), revents: 0)
            let n = poll(&p, 1, deadline.millisecondsLeft)
            if n > 0 { return true }
            if n == 0 || errno != EINTR { return false }
        }
    }

    /// Runs a libssl call until it is done, waiting for the socket as libssl asks; its
    /// result (above 0).
    @discardableResult
    static func io(_ ssl: OpaquePointer, _ fd: Int32, _ deadline: FleetDeadline, _ server: ServerURL,
                   _ call: (OpaquePointer) -> Int32) throws -> Int32 {
        while true {
            ERR_clear_error()
            let r = call(ssl)
            if r > 0 { return r }
            switch SSL_get_error(ssl, r) {
            case SSL_ERROR_WANT_READ:
                guard wait(fd, POLLIN, deadline) else { throw FleetClientError("\(server): no answer in time") }
            case SSL_ERROR_WANT_WRITE:
                guard wait(fd, POLLOUT, deadline) else { throw FleetClientError("\(server): no answer in time") }
            case SSL_ERROR_ZERO_RETURN:
                throw FleetClientError("\(server): connection closed")
            case SSL_ERROR_SYSCALL:
                let e = errno
                throw FleetClientError("\(server): connection closed" + (r < 0 && e != 0 ? " (\(String(cString: strerror(e))))" : ""))
            default:
                let verify = SSL_get_verify_result(ssl)
                if verify != X509_V_OK {
                    throw FleetClientError("\(server): the server's certificate: \(String(cString: X509_verify_cert_error_string(verify)))")
                }
                throw FleetClientError("\(server): TLS: \(TLSIdentity.openSSLError())")
            }
        }
    }

    /// Sends one request and waits for its whole response, or throws by `deadline`.
    public func send(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [],
                     deadline: FleetDeadline) throws -> FleetResponse {
        try begin(method, path, headers: headers, body: body, deadline: deadline)
        return try finish(deadline)
    }

    /// Sends one request without waiting for its response; `finish` reads it. Between the
    /// two, `descriptor` becomes readable when the answer starts to arrive: a caller with
    /// many connections (Benchmarks/fleet-load) waits on all of them with one poll.
    public func begin(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [],
                      deadline: FleetDeadline) throws {
        guard !inFlight else { throw FleetClientError("\(server): a request is already waiting for its answer on this connection") }
        try Self.check(path: path, headers: headers)
        var head = "\(method.rawValue) \(path) HTTP/1.1\r\nHost: \(server.address)\r\nContent-Length: \(body.count)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        var request = Array((head + "\r\n").utf8) + body
        defer { ConstantTime.wipe(&request) }  // a code or a password, in a process that lives on (the agent)
        // In flight from the first byte on: a request cut off halfway leaves nothing on
        // this connection that a later answer could be taken for.
        inFlight = true
        try forgettingSessionOnFailure {
            var sent = 0
            while sent < request.count {
                sent += Int(try request[sent...].withUnsafeBytes { b in
                    try Self.io(ssl, fd, deadline, server) { SSL_write($0, b.baseAddress, Int32(b.count)) }
                })
            }
        }
    }

    /// Waits for the whole response to the request `begin` sent, or throws by `deadline`.
    public func finish(_ deadline: FleetDeadline) throws -> FleetResponse {
        guard inFlight else { throw FleetClientError("\(server): no request is waiting for its answer on this connection") }
        return try forgettingSessionOnFailure {
            let response = try readResponse(deadline)
            inFlight = false
            answered = true
            saveSession()
            return response
        }
    }

    /// The connection's socket, to wait on (poll) for a response `begin` asked for.
    public var descriptor: Int32 { fd }

    /// Runs `step`; if it fails, a resumed session the server closed before any answer (a
    /// host revoked, or a certificate ended since: the server's checks come after TLS) is
    /// not offered again.
    private func forgettingSessionOnFailure<T>(_ step: () throws -> T) throws -> T {
        do {
            return try step()
        } catch {
            if resumed && !answered, let file = sessionFile { FileSystem.unlink(file) }
            throw error
        }
    }

    /// A request line and headers that say only what they mean: a value from PAM (the
    /// remote host) must not start a header of its own, nor a path a request.
    static func check(path: String, headers: [(String, String)]) throws {
        let control: (UInt8) -> Bool = { $0 < 0x20 || $0 == 0x7F }
        guard !path.utf8.contains(where: { control($0) || $0 == 0x20 }), !headers.contains(where: { ($0.0 + $0.1).utf8.contains(where: control) }) else {
            throw FleetClientError("a request's path or header holds a control character (or the path a space)")
        }
    }

    /// Keeps this connection's session for the next process, once libssl holds one that
    /// can be resumed (TLS 1.3 sends it after the handshake: it has come with the answer).
    func saveSession() {
        guard !sessionSaved, let file = sessionFile, let session = newSession.session, SSL_SESSION_is_resumable(session) == 1 else { return }
        sessionSaved = true
        let size = i2d_SSL_SESSION(session, nil)
        guard size > 0, size < 1 << 16 else { return }
        var der = [UInt8](repeating: 0, count: Int(size))
        der.withUnsafeMutableBufferPointer { b in
            var p: UnsafeMutablePointer<UInt8>? = b.baseAddress
            _ = i2d_SSL_SESSION(session, &p)
        }
        // A new file beside it, then renamed over it: a login running at the same time
        // reads the old session or the new one, never half of one.
        // Unique to this connection: the agent's threads share one pid.
        let temporary = file + ".\(getpid()).\(Hex.encode(SecureRandom.bytes(6) ?? []))"
        do {
            let fd = try FileDescriptor.open(temporary, [.writeOnly, .create, .exclusive], mode: 0o600)
            defer { fd.close() }
            try fd.writeAll(der, temporary)
            try FileSystem.rename(temporary, to: file)
        } catch {
            FileSystem.unlink(temporary)
            return
        }
        // Sessions made with a certificate or CA since replaced are never offered again.
        let own = String(file.split(separator: "/").last ?? ""), folder = String(file.dropLast(own.count + 1))
        if let names = try? FileSystem.list(folder) {
            let prefix = TLSIdentity.sessionPrefix(server)
            for name in names where name.hasPrefix(prefix) && name != own && name.count == own.count { FileSystem.unlink(folder + "/" + name) }
        }
    }

    /// Reads bytes into `pending` (at least one more).
    func fill(_ deadline: FleetDeadline) throws {
        var chunk = [UInt8](repeating: 0, count: 16_384)
        let n = try chunk.withUnsafeMutableBytes { b in
            try Self.io(ssl, fd, deadline, server) { SSL_read($0, b.baseAddress, Int32(b.count)) }
        }
        pending += chunk.prefix(Int(n))
    }

    /// One line of the head (or of a chunked body), without its CRLF; at most 16 KiB.
    func line(_ deadline: FleetDeadline) throws -> String {
        while true {
            if let i = pending.firstIndex(of: UInt8(ascii: "\n")) {
                var l = pending[..<i]
                if l.last == UInt8(ascii: "\r") { l = l.dropLast() }
                pending.removeFirst(i + 1)
                return String(decoding: l, as: UTF8.self)
            }
            guard pending.count < 16_384 else { throw FleetClientError("\(server): an answer's head is too long") }
            try fill(deadline)
        }
    }

    func bytes(_ n: Int, _ deadline: FleetDeadline) throws -> [UInt8] {
        while pending.count < n { try fill(deadline) }
        defer { pending.removeFirst(n) }
        return Array(pending.prefix(n))
    }

    func readResponse(_ deadline: FleetDeadline) throws -> FleetResponse {
        let status = try line(deadline).split(separator: " ")
        guard status.count >= 2, status[0].hasPrefix("HTTP/1."), let code = Int(status[1]) else {
            throw FleetClientError("\(server): not an HTTP answer")
        }
        var response = FleetResponse(status: code, headers: [], body: [])
        while case let l = try line(deadline), !l.isEmpty {
            guard response.headers.count < 100 else { throw FleetClientError("\(server): an answer with too many headers") }
            guard let colon = l.firstIndex(of: ":") else { throw FleetClientError("\(server): a malformed header in the answer") }
            response.headers.append((String(l[..<colon]), String(l[l.index(after: colon)...].drop { $0 == " " || $0 == "\t" })))
        }
        let tooLarge = FleetClientError("\(server): answer too large")
        if response.header("Transfer-Encoding")?.lowercased() == "chunked" {
            while true {
                guard let size = Int(try line(deadline).split(separator: ";").first ?? "", radix: 16), size >= 0 else {
                    throw FleetClientError("\(server): a malformed chunk in the answer")
                }
                guard size <= FleetAPI.maxBody - response.body.count else { throw tooLarge }
                response.body += try bytes(size, deadline)
                if size == 0 {
                    // The trailer: header lines up to an empty one.
                    var trailer = 0
                    while case let l = try line(deadline), !l.isEmpty {
                        trailer += 1
                        guard trailer < 100 else { throw FleetClientError("\(server): an answer with too many headers") }
                    }
                    break
                }
                guard try line(deadline).isEmpty else { throw FleetClientError("\(server): a malformed chunk in the answer") }
            }
        } else if let length = response.header("Content-Length").flatMap({ Int($0) }) {
            guard length >= 0, length <= FleetAPI.maxBody else { throw tooLarge }
            response.body = try bytes(length, deadline)
        } else {
            throw FleetClientError("\(server): an answer without its length")
        }
        return response
    }
}

/// Requests to a list of servers, tried in order within one deadline: the first one that
/// answers with a verdict (any status below 500) decides; a 5xx (the server cannot reach
/// its database) moves on to the next and is returned only when it is the last word.
/// None answering is an error: callers fail closed.
public final class FleetServers {
    /// How long a server may take to accept the connection before the next one is asked:
    /// a verifier that silently drops packets costs a login this, not the whole timeout.
    public static let connectTimeout: Duration = .seconds(1)
    public let servers: [ServerURL]
    let identity: TLSIdentity
    private var connection: FleetConnection?
    /// Set by the agent when it hands a connection kept from an earlier login to a new one.
    public var keptFromEarlier = false

    /// `trustOnly`: present no certificate (a host that joins).
    public init(_ servers: [ServerURL], tlsDirectory: String, trustOnly: Bool = false) throws {
        self.servers = servers
        identity = trustOnly ? try TLSIdentity(trusting: tlsDirectory) : try TLSIdentity(directory: tlsDirectory)
    }

    /// Whether a kept connection can serve the next session (the fleet agent's): one the
    /// server has closed, or sent anything unasked, is let go (a fresh one resumes the TLS
    /// session). One to a server that vanished without a word still looks open; asking it
    /// costs a request its deadline, as it would within a session.
    public func keepable() -> Bool {
        guard let open = connection else { return false }
        var p = pollfd(fd: open.fd, events: Int16(POLLIN), revents: 0)
        if poll(&p, 1, 0) != 0 || !open.pending.isEmpty {
            connection = nil
            return false
        }
        return true
    }

    public func send(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [],
                     timeout: Duration) throws -> FleetResponse {
        let deadline = FleetDeadline.now() + timeout
        try FleetConnection.check(path: path, headers: headers)
        // One id for this request, the same at every server asked: a replica that finds it
        // already decided (its first answer was lost) answers that verdict again rather
        // than counting the attempt twice (RecentRequests).
        let headers = headers + [("X-SmartOTP-Request", Hex.encode(SecureRandom.bytes(16) ?? []))]
        var errors: [String] = []
        var unavailable: FleetResponse?
        if let open = connection {
            // A connection the agent kept from an earlier login gets a third of the time (at
            // least the connect deadline) for its first request: a verifier that vanished
            // without closing it must leave time for the next one, asked with the same
            // request id. One this login opened gets the whole time, as before.
            let limit = keptFromEarlier ? min(deadline, FleetDeadline.now() + max(Self.connectTimeout, timeout / 3)) : deadline
            keptFromEarlier = false
            if let r = try? open.send(method, path, headers: headers, body: body, deadline: limit), r.status < 500 { return r }
            connection = nil
        }
        for server in servers {
            guard FleetDeadline.now() < deadline else { errors.append("\(server): not tried (out of time)"); continue }
            do {
                let c = try FleetConnection(to: server, identity: identity, deadline: min(deadline, FleetDeadline.now() + Self.connectTimeout))
                let r = try c.send(method, path, headers: headers, body: body, deadline: deadline)
                connection = c
                if r.status < 500 { return r }
                unavailable = r
                errors.append("\(server): \(r.status) \(r.text.prefix(100))")
            } catch {
                errors.append("\(error)")
            }
        }
        if let unavailable { return unavailable }
        throw FleetClientError("no verifier answered: " + errors.joined(separator: "; "))
    }
}
