
/// An address to listen on or connect to: `HOST:PORT` (`[V6]:PORT` for IPv6).
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(_ text: String) {
        var rest = Substring(text)
        let host: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = rest[rest.index(after: rest.startIndex)..<close]
            rest = rest[rest.index(after: close)...]
        } else {
            guard let colon = rest.lastIndex(of: ":") else { return nil }
            host = rest[..<colon]
            rest = rest[colon...]
        }
        guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), (1...65535).contains(port), !host.isEmpty,
              host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" }) else { return nil }
        self.init(host: String(host), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A verifier's address as hosts name it: `https://HOST:PORT` (port 443 when left out).
public struct ServerURL: Sendable, Equatable, CustomStringConvertible {
    public var address: HostPort

    public init?(_ text: String) {
        guard text.hasPrefix("https://") else { return nil }
        var rest = String(text.dropFirst(8))
        if rest.hasSuffix("/") { rest.removeLast() }
        guard !rest.contains("/"), !rest.contains("@") else { return nil }
        if let a = HostPort(rest) { address = a } else if let a = HostPort(rest + ":443") { address = a } else { return nil }
    }

    /// A comma-separated list, tried in order.
    public static func list(_ text: String) -> [ServerURL]? {
        let parts = text.split(separator: ",").map(String.init)
        let urls = parts.compactMap(ServerURL.init)
        return urls.count == parts.count && !urls.isEmpty ? urls : nil
    }

    public var description: String { "https://\(address)" }
}

/// Who holds a peer's certificate: which CA signed it decides.
public enum FleetRole: String, Sendable, Equatable, CaseIterable {
    case host
    /// Reads records and the audit, unlocks and resynchronises; never sets or removes a
    /// secret, a password or recovery codes.
    case helpdesk
    case admin
}
