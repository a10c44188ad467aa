import OTPCore
import TokenStore
import Verifier

/// Where verdicts are decided and kept: PostgreSQL in smartotpd (one transaction on the
/// user's row), memory in the tests.
public protocol VerdictStore: Sendable {
    /// A read-only request (summary, access answers): no lock, no write.
    func readOnly(_ request: HelperProtocol.Request, user: UserName, host: String, policy: Policy, now: Int64) async throws -> FleetDecision
    /// A request that changes the record (challenge, code, password, tap): the verdict
    /// exists only once the change is durable.
    func locked(_ request: HelperProtocol.Request, user: UserName, host: String, policy: Policy, now: Int64) async throws -> FleetDecision
}

/// Who holds the peer's certificate: which CA signed it decides.
public enum FleetRole: Sendable, Equatable {
    case host
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
        case (.users, "GET"), (.record, "GET"), (.record, "PUT"), (.record, "DELETE"):
            return role == .admin ? nil : Response(403, "administration needs an administrator's certificate\n")
        default: return Response(405, "method not allowed\n")
        }
    }

    /// `POST /v1/verify/OPERATION/USER` from `host`: the request read from its body, decided
    /// by `store` (read-only or locked, by operation), the typed reply encoded here and
    /// nowhere else. The decision is returned too, for the metrics and the log.
    public static func verify(_ operation: HelperProtocol.Operation, _ user: UserName, body: [UInt8], host: String,
                              policy: Policy, now: Int64, store: some VerdictStore) async throws -> (Response, FleetDecision?) {
        let request: HelperProtocol.Request
        do throws(HelperProtocol.ParseError) { request = try HelperProtocol.request(operation, lines: HelperProtocol.lines(body)) } catch {
            return (Response(400, error.description + "\n"), nil)
        }
        let decision: FleetDecision
        switch request {
        case .summary, .access: decision = try await store.readOnly(request, user: user, host: host, policy: policy, now: now)
        case .challenge, .perform: decision = try await store.locked(request, user: user, host: host, policy: policy, now: now)
        }
        return (Response(200, HelperProtocol.encode(decision.reply)), decision)
    }
}
