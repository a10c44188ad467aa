import FleetNet
import Foundation
import SmartOTPFleet
import Testing

/// The fleet client's failure paths, on loopback: it fails closed, names every server it
/// tried, and keeps to its deadline. (A full TLS exchange is 65-fleet's, with real
/// certificates, PostgreSQL and replicas.)
@Suite("FleetServers: failing closed, in time")
struct FleetServersTests {
    /// A TLS identity (a self-signed P-256 certificate as its own CA) in a folder removed after.
    func withIdentity<R>(_ body: (String) throws -> R) throws -> R {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smartotp-fleetnet-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: dir) }
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                             "-subj", "/CN=fleetnet-test", "-keyout", dir.path + "/key.pem", "-out", dir.path + "/cert.pem"]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        try #require(openssl.terminationStatus == 0, "openssl made the test identity")
        try FileManager.default.copyItem(atPath: dir.path + "/cert.pem", toPath: dir.path + "/ca.pem")
        return try body(dir.path)
    }

    /// A TCP socket bound to a free loopback port: the descriptor and the port.
    func boundSocket() -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return (fd, Int(UInt16(bigEndian: a.sin_port)))
    }

    /// A loopback port that nothing listens on (bound, then closed).
    func closedPort() -> Int {
        let s = boundSocket()
        close(s.fd)
        return s.port
    }

    @Test func aMissingIdentityIsNamed() {
        #expect(throws: FleetClientError.self) { try FleetServers([], tlsDirectory: "/nonexistent/tls") }
        do { _ = try FleetServers([], tlsDirectory: "/nonexistent/tls") } catch {
            #expect("\(error)".contains("/nonexistent/tls (ca.pem, cert.pem, key.pem)"))
        }
    }

    @Test func anIdentityOthersCouldReadOrReplaceIsRefused() throws {
        try withIdentity { dir in
            chmod(dir + "/key.pem", 0o644)
            #expect(throws: FleetClientError.self, "a key others can read") { try FleetServers([], tlsDirectory: dir) }
            chmod(dir + "/key.pem", 0o600)
            chmod(dir, 0o777)
            #expect(throws: FleetClientError.self, "a folder others can write") { try FleetServers([], tlsDirectory: dir) }
            chmod(dir, 0o700)
            _ = try FleetServers([], tlsDirectory: dir)
        }
    }

    @Test func noServerAnsweringIsAnErrorNamingEach() throws {
        try withIdentity { dir in
            let urls = try [closedPort(), closedPort()].map { try #require(ServerURL("https://127.0.0.1:\($0)")) }
            let client = try FleetServers(urls, tlsDirectory: dir)
            do {
                _ = try client.send(.POST, "/v1/verify/summary/alice", timeout: .seconds(5))
                Issue.record("an answer from nowhere")
            } catch {
                let text = "\(error)"
                #expect(text.hasPrefix("no verifier answered"))
                for u in urls { #expect(text.contains("\(u.address.port)"), "names \(u)") }
            }
        }
    }

    @Test func aHeaderOrPathWithALineBreakIsRefusedBeforeAnyServerIsAsked() throws {
        try withIdentity { dir in
            let url = try #require(ServerURL("https://127.0.0.1:\(closedPort())"))
            let client = try FleetServers([url], tlsDirectory: dir)
            for (path, headers) in [("/v1/verify/summary/alice", [("X-SmartOTP-Rhost", "evil\r\nX-SmartOTP-Service: sshd")]),
                                    ("/v1/verify/summary/alice HTTP/1.1\r\nX: y", []), ("/v1/verify/summary/a b", [])] {
                do {
                    _ = try client.send(.POST, path, headers: headers, timeout: .seconds(5))
                    Issue.record("sent")
                } catch {
                    #expect("\(error)".contains("control character"), "\(error)")
                }
            }
        }
    }

    @Test func aDeadlineCounts() {
        let start = FleetDeadline.now()
        #expect(start < start + .milliseconds(1))
        #expect((start + .seconds(2)).millisecondsLeft > 1_000)
        #expect((start + .seconds(-1)).millisecondsLeft == 0)
    }

    @Test func aServerThatNeverAnswersCostsNoMoreThanTheTimeout() throws {
        // Accepts the connection (the kernel's backlog) and never speaks TLS.
        let (fd, port) = boundSocket()
        defer { close(fd) }
        try #require(listen(fd, 8) == 0)
        try withIdentity { dir in
            let url = try #require(ServerURL("https://127.0.0.1:\(port)"))
            let client = try FleetServers([url], tlsDirectory: dir)
            let started = Date()
            #expect(throws: FleetClientError.self) { try client.send(.POST, "/v1/verify/summary/alice", timeout: .seconds(1)) }
            #expect(Date().timeIntervalSince(started) < 5, "the deadline holds (1 s asked)")
        }
    }
}
