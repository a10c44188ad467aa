import Glibc

/// The client side of vsmartcard's vpcd protocol: a TCP stream on which every message
/// is a 2-byte big-endian length and a body. A 1-byte body is a control code
/// (0 power off, 1 power on, 2 reset, 4 get ATR); anything longer is a command APDU,
/// answered with a response APDU the same way. vpcd shows a card in its reader for as
/// long as this connection is open.
public final class VPCDLink {
    public enum Control: UInt8 {
        case powerOff = 0
        case powerOn = 1
        case reset = 2
        case getATR = 4
    }

    /// A minimal T=1 ATR: TS 3B, T0 80, TD1 80, TD2 01, TCK 01.
    public static let atr: [UInt8] = [0x3B, 0x80, 0x80, 0x01, 0x01]

    private let fd: Int32

    public struct LinkError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Connects to vpcd on `host:port` (IPv4 dotted quad, loopback by default).
    public init(host: String = "127.0.0.1", port: UInt16) throws(LinkError) {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { throw LinkError(description: "socket: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            close(s)
            throw LinkError(description: "not an IPv4 address: \(host)")
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(s)
            throw LinkError(description: "connect to vpcd at \(host):\(port): \(String(cString: strerror(e)))")
        }
        fd = s
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// vpcd writes a message's length and its body separately: with Nagle on its side and
    /// delayed ACKs on ours, every APDU would wait 40 ms for an ACK. Quick ACKs (which
    /// the kernel turns off again after a while, hence after every read) avoid that.
    private func quickAck() {
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close(fd) }

    /// What arrived from vpcd.
    public enum Message {
        case control(Control?)
        case apdu([UInt8])
        /// vpcd closed the connection (pcscd stopped).
        case closed
        /// A signal interrupted the wait.
        case interrupted
    }

    /// Reads one message. EINTR is returned as `.interrupted` so the caller can act on signals.
    public func receive() throws(LinkError) -> Message {
        guard let header = try readExactly(2) else { return .closed }
        if header.isEmpty { return .interrupted }
        let length = Int(header[0]) << 8 | Int(header[1])
        guard let body = try readExactly(length, retryInterrupts: true), body.count == length else { return .closed }
        if length == 1 { return .control(Control(rawValue: body[0])) }
        return .apdu(body)
    }

    /// Sends one length-prefixed message.
    public func send(_ body: [UInt8]) throws(LinkError) {
        let framed = [UInt8(truncatingIfNeeded: body.count >> 8), UInt8(truncatingIfNeeded: body.count)] + body
        var offset = 0
        while offset < framed.count {
            let n = framed.withUnsafeBytes { Glibc.send(fd, $0.baseAddress.map { $0 + offset }, framed.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw LinkError(description: "send to vpcd: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    /// nil on EOF; [] when interrupted before the first byte (unless `retryInterrupts`).
    private func readExactly(_ count: Int, retryInterrupts: Bool = false) throws(LinkError) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress.map { $0 + got }, count - got, 0) }
            if n < 0 && errno == EINTR {
                if got == 0 && !retryInterrupts { return [] }
                continue
            }
            if n < 0 { throw LinkError(description: "recv from vpcd: \(String(cString: strerror(errno)))") }
            if n == 0 { return nil }
            quickAck()
            got += n
        }
        return out
    }
}
