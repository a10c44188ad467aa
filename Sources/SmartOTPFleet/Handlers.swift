import OTPCore
import TokenStore
import Verifier

/// Who asked, as the audit trail names them.
public struct Requester: Sendable, Equatable, CustomStringConvertible {
    /// The certificate's common name (a host's name, an administrator's) and serial.
    public var name: String
    public var serial: String
    public var role: FleetRole
    /// The peer's address as the server saw it.
    public var address: String
    /// PAM_RHOST and PAM_SERVICE on the host, as its fleet client reports them.
    public var remoteHost: String
    public var service: String
    /// The request's id (`X-SmartOTP-Request`; RecentRequests), or "".
    public var requestID: String

    public init(name: String, serial: String, role: FleetRole, address: String, remoteHost: String = "", service: String = "",
                requestID: String = "") {
        self.requestID = RecentRequests.isValid(requestID) ? requestID : ""
        self.name = name
        self.serial = serial
        self.role = role
        self.address = address
        self.remoteHost = remoteHost
        self.service = service
    }

    public var description: String { "\(role.rawValue) \(name) (serial \(serial), \(address))" }
}

/// What the audit trail says of a verdict: the credential kind, the result, the reason.
/// Never a code, a password or a challenge.
public struct AuditFacts: Sendable, Equatable {
    public var operation: String
    public var credential: String
    public var result: String
    public var reason: String

    public init(operation: String, credential: String, result: String, reason: String) {
        self.operation = operation
        self.credential = credential
        self.result = result
        self.reason = reason
    }

    public static func of(_ request: HelperProtocol.Request, _ reply: HelperProtocol.Reply) -> AuditFacts {
        var credential = ""
        switch request {
        case .perform(.tap), .access, .challenge: credential = "tap"
        case .perform(.password): credential = "password"
        case .perform(.code): credential = "code"
        case .summary, .offline: break
        }
        var reason = ""
        switch reply {
        case .attempt(let a):
            switch a.verdict {
            case .accepted(.recoveryCode): credential = "recovery"; reason = "a recovery code"
            case .accepted(.token(let id)): reason = "token \(id)"
            case .accepted(.password): reason = "the simple password"
            case .replayed(let id): reason = "token \(id): a code already used"
            case .rejected: reason = a.lock.isLocked ? "wrong; the user is now locked" : "wrong"
            case .locked: reason = "the user is locked"
            }
        case .access(let answers): reason = answers == nil ? "no issued challenge, or no access key" : "answered an issued challenge"
        case .summary(let s): reason = s == nil ? "not enrolled" : ""
        case .challenge: reason = "issued"
        case .offline(let epoch): reason = "offline epoch \(epoch)"
        }
        return AuditFacts(operation: request.operation.rawValue, credential: credential, result: reply.result, reason: reason)
    }
}

/// Where verdicts are decided and kept: PostgreSQL in smartotpd (one transaction on the
/// user's row, the audit row in the same transaction), memory in the tests.
public protocol VerdictStore: Sendable {
    /// A read-only request (summary): no lock, no write.
    func readOnly(_ request: HelperProtocol.Request, user: UserName, by requester: Requester, policy: Policy) async throws -> FleetDecision
    /// A request that changes the record (challenge, access, code, password, tap): the
    /// verdict exists only once the change and its audit row are durable.
    func locked(_ request: HelperProtocol.Request, user: UserName, by requester: Requester, policy: Policy) async throws -> FleetDecision
}

/// Who holds the peer's certificate: which CA signed it decides.
public enum FleetRole: String, Sendable, Equatable {
    case host
    /// Reads records and the audit, unlocks and resynchronises; never sets or removes a
    /// secret, a password or recovery codes.
    case helpdesk
    case admin
}

/// smartotpd's handlers: plain functions from a typed request to a typed answer, tested in
/// process. The HTTP edge (smartotpd's Server) only reads the request and writes the answer.
public enum FleetHandlers {
    /// An answer's status and text.
    public struct Response: Sendable, Equatable {
        public var status: Int
        public var text: String

        public init(_ status: Int, _ text: String) {
            self.status = status
            self.text = text
        }
    }

    /// Whether `role` may call `route` with `method`: nil when it may, else the refusal.
    public static func authorize(_ route: FleetAPI.Route, method: String, role: FleetRole) -> Response? {
        switch (route, method) {
        case (.health, "GET"), (.verify, "POST"): return nil
        case (.revoke, "POST"):
            return role == .admin ? nil : Response(403, "revoking a host needs an administrator's certificate\n")
        case (.users, "GET"), (.show, "GET"), (.audit, "GET"), (.revocations, "GET"):
            return role == .host ? Response(403, "administration needs an administrator's or the helpdesk's certificate\n") : nil
        case (.change(let verb, _), "POST"):
            switch role {
            case .admin: return nil
            case .helpdesk where FleetAPI.helpdeskVerbs.contains(verb): return nil
            case .helpdesk: return Response(403, "the helpdesk may not \(verb): it needs an administrator's certificate\n")
            case .host: return Response(403, "administration needs an administrator's certificate\n")
            }
        default: return Response(405, "method not allowed\n")
        }
    }

    /// `POST /v1/verify/OPERATION/USER` from `host`: the request read from its body, decided
    /// by `store` (read-only or locked, by operation), the typed reply encoded here and
    /// nowhere else. The decision is returned too, for the metrics and the log.
    public static func verify(_ operation: HelperProtocol.Operation, _ user: UserName, body: [UInt8], by requester: Requester,
                              policy: Policy, store: some VerdictStore) async throws -> (Response, FleetDecision?) {
        let request: HelperProtocol.Request
        do throws(HelperProtocol.ParseError) { request = try HelperProtocol.request(operation, lines: HelperProtocol.lines(body)) } catch {
            return (Response(400, error.description + "\n"), nil)
        }
        let decision: FleetDecision
        switch request {
        case .summary: decision = try await store.readOnly(request, user: user, by: requester, policy: policy)
        case .challenge, .access, .perform, .offline: decision = try await store.locked(request, user: user, by: requester, policy: policy)
        }
        return (Response(200, HelperProtocol.encode(decision.reply)), decision)
    }
}
