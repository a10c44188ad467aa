import Logging
import Metrics
import OTPCore
import SmartOTPFleet
import Synchronization
import TokenStore
import Verifier

/// One request as the HTTP edge hands it over: everything the service decides on, and
/// nothing of TLS or HTTP framing.
public struct ServiceRequest: Sendable {
    public var method: String
    public var uri: String
    /// Header values by lower-case name (the first of each).
    public var headers: [String: String]
    public var body: [UInt8]
    /// The client certificate TLS verified (DER), nil when none.
    public var certificate: [UInt8]?
    /// The peer's address as the edge saw it.
    public var address: String
    /// Whether the body was larger than `FleetAPI.maxBody` (and cut).
    public var bodyTooLarge = false

    public init(method: String, uri: String, headers: [String: String] = [:], body: [UInt8] = [], certificate: [UInt8]?,
                address: String, bodyTooLarge: Bool = false) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
        self.certificate = certificate
        self.address = address
        self.bodyTooLarge = bodyTooLarge
    }

    /// A header a host's fleet client sends (PAM_RHOST, PAM_SERVICE, the request id),
    /// bounded and printable.
    public func header(_ name: String) -> String {
        String((headers[name.lowercased()] ?? "").prefix(255).map { $0.isASCII && !$0.isNewline && $0 != "\t" ? $0 : "?" })
    }
}

/// The service's answer: a status and a text; `close` when the connection must end with it
/// (a refused certificate).
public struct ServiceResponse: Sendable, Equatable {
    public var status: Int
    public var text: String
    public var close = false

    public init(_ status: Int, _ text: String, close: Bool = false) {
        self.status = status
        self.text = text
        self.close = close
    }
}

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

/// What a request carries through the middleware: who asks (once identified) and which
/// route it takes (once routed).
public struct RequestContext: Sendable {
    public let request: ServiceRequest
    public var peer: Peer?
    public var route: FleetAPI.Route?
    public var requester: Requester?

    public init(_ request: ServiceRequest) { self.request = request }
}

/// The rest of the chain, as a middleware calls it.
public typealias Responder = @Sendable (inout RequestContext) async -> ServiceResponse

/// One step before the handlers: it answers itself (a refusal) or passes the request on.
public protocol ServiceMiddleware: Sendable {
    func handle(_ context: inout RequestContext, next: Responder) async -> ServiceResponse
}

/// The metrics the service counts (Prometheus names; dist/grafana-smartotpd.json reads them).
public enum ServiceMetrics {
    public static let verdicts = "smartotpd_verdicts_total"
    public static let latency = "smartotpd_request_duration_seconds"
    public static let databaseErrors = "smartotpd_database_errors_total"
    public static let refusals = "smartotpd_refused_connections_total"
    public static let sealRefusals = "smartotpd_refused_records_total"
    public static let busy = "smartotpd_busy_refusals_total"
    public static let overBudget = "smartotpd_host_budget_refusals_total"
    public static let outOfScope = "smartotpd_out_of_scope_refusals_total"
}

/// The verifier as a service: middleware (identity and role, revocation, routing, budgets,
/// hashing slots) and handlers over one `Ledger`. The NIO server is only its edge (TLS and
/// HTTP framing); the tests call `respond` in process.
public struct VerifierService: Sendable {
    public let config: ServerConfig
    public let ledger: any Ledger
    /// Who a certificate names, by the roles' CAs (replaced when SIGHUP reloads them).
    public var identifier: PeerIdentifier { identities.current.withLock { $0 } }
    private let identities: Identities

    final class Identities: Sendable {
        let current: Mutex<PeerIdentifier>
        init(_ i: PeerIdentifier) { current = Mutex(i) }
    }

    /// Takes new CAs for the roles (smartotpd's SIGHUP): connections already admitted stay.
    public func replace(identifier: PeerIdentifier) { identities.current.withLock { $0 = identifier } }
    public let revoked: RevocationList
    public let logger: Logger
    /// Each host certificate's requests, failed verdicts (and each user's share of them),
    /// and the tap challenges it asked for: fleet-wide, in `budgets`.
    public let requests: HostBudget
    public let failures: HostBudget
    public let userFailures: HostBudget
    public let challenges: HostBudget
    /// Verdicts that hash (yescrypt) at once.
    public let hashing: Slots
    /// What ties a request id to what it asked (RecentRequests): a key outside the ledger.
    public let binder: RequestBinder
    /// Which users each host may ask about (`scope` lines).
    public let scopes: HostScopes
    /// The fleet's budgets' store (also a join token's single use).
    public let budgets: any BudgetStore
    /// What signs the certificates of hosts that join (nil: no joining here).
    public let hostCA: HostCA?
    public let joinTokens: JoinTokens
    /// The host certificates this replica has seen (`GET /v1/admin/hosts`).
    public let seenHosts = SeenHosts()
    /// How long a verdict may wait for the ledger: past it the commit is cancelled (nothing
    /// is written after) and the host is told 503 in time to ask another replica.
    public var deadline: Duration = .seconds(2)
    /// The same for an administrator's request (a change, a list, an audit read).
    public var adminDeadline: Duration = .seconds(15)

    /// `budgets`: where the fleet's budgets are kept (the ledger's adapter); `clock`: Unix
    /// seconds, for the budgets' windows.
    public init(config: ServerConfig, ledger: any Ledger, budgets: any BudgetStore, identifier: PeerIdentifier, revoked: RevocationList,
                binder: RequestBinder, logger: Logger, clock: @escaping @Sendable () -> Int64, hashingSlots: Int,
                groupsOf: @escaping @Sendable (String) -> Set<String>? = HostScopes.systemGroups, hostCA: HostCA? = nil) {
        self.config = config
        self.ledger = ledger
        identities = Identities(identifier)
        self.revoked = revoked
        self.binder = binder
        self.logger = logger
        requests = HostBudget("requests", config.hostRequestBudget, store: budgets, clock: clock)
        failures = HostBudget("failures", config.hostFailureBudget, store: budgets, clock: clock)
        userFailures = HostBudget("user-failures", config.hostUserFailureBudget, store: budgets, clock: clock)
        challenges = HostBudget("challenges", config.hostChallengeBudget, store: budgets, clock: clock)
        hashing = Slots(max(1, hashingSlots))
        scopes = HostScopes(config.scopes, groupsOf: groupsOf, clock: clock)
        self.hostCA = hostCA
        self.budgets = budgets
        joinTokens = JoinTokens(audit: binder.audit)
        self.clock = clock
    }

    /// Unix seconds (the budgets', the join tokens' and the certificates' clock).
    public let clock: @Sendable () -> Int64

    /// The middleware, in order.
    var middleware: [any ServiceMiddleware] {
        [Identify(service: self), Revoked(service: self), Route(service: self)]
    }

    /// The answer to one request: through every middleware, then its route's handler.
    public func respond(_ request: ServiceRequest) async -> ServiceResponse {
        var context = RequestContext(request)
        let chain = middleware
        @Sendable func run(_ i: Int, _ c: inout RequestContext) async -> ServiceResponse {
            guard i < chain.count else { return await handle(&c) }
            return await chain[i].handle(&c) { next in await run(i + 1, &next) }
        }
        return await run(0, &context)
    }
}

/// The peer's certificate names who asks (403 and the connection closed when it names
/// nobody a role knows).
struct Identify: ServiceMiddleware {
    let service: VerifierService

    func handle(_ context: inout RequestContext, next: Responder) async -> ServiceResponse {
        // A host that joins has no certificate yet: its one route needs none.
        if context.request.certificate == nil, service.hostCA != nil, FleetAPI.route(context.request.uri) == .join {
            return await next(&context)
        }
        do throws(PeerIdentifier.Refusal) { context.peer = try service.identifier.identify(context.request.certificate, now: service.clock()) } catch {
            Counter(label: ServiceMetrics.refusals).increment()
            service.logger.warning("refused", metadata: ["why": "\(error)", "peer": "\(context.request.address)"])
            return ServiceResponse(403, "\(error)\n", close: true)
        }
        return await next(&context)
    }
}

/// A revoked certificate is refused on every request, not only a connection's first: a
/// host revoked while its connection stays open is cut off too.
struct Revoked: ServiceMiddleware {
    let service: VerifierService

    func handle(_ context: inout RequestContext, next: Responder) async -> ServiceResponse {
        guard let p = context.peer else {
            return context.request.certificate == nil && service.hostCA != nil ? await next(&context) : ServiceResponse(403, "no client certificate\n", close: true)
        }
        if service.revoked.contains(serial: p.serial, name: p.name) {
            Counter(label: ServiceMetrics.refusals).increment()
            let why = service.revoked.unreadable() ?? "revoked certificate: \(p.name) (serial \(p.serial))"
            service.logger.warning("refused", metadata: ["why": "\(why)"])
            return ServiceResponse(403, "\(why)\n", close: true)
        }
        return await next(&context)
    }
}

/// The path names a route (404), the method and the peer's role may call it (405, 403),
/// the body is within its limit (413); the requester is named for the handlers.
struct Route: ServiceMiddleware {
    let service: VerifierService

    func handle(_ context: inout RequestContext, next: Responder) async -> ServiceResponse {
        let request = context.request
        guard let p = context.peer else {
            // Only a join, and only where host_ca_key is set (Identify let nothing else by).
            guard service.hostCA != nil, FleetAPI.route(request.uri) == .join, request.method == "POST" else {
                return ServiceResponse(403, "no client certificate\n", close: true)
            }
            guard !request.bodyTooLarge else { return ServiceResponse(413, "request too large\n", close: true) }
            context.route = .join
            context.requester = Requester(name: "-", serial: "-", role: .host, address: request.address)
            return await next(&context)
        }
        if p.role == .host, let ends = p.notAfter { service.seenHosts.saw(p.name, serial: p.serial, notAfter: ends, at: service.clock()) }
        guard let route = FleetAPI.route(request.uri) else { return ServiceResponse(404, "no such path\n") }
        if let refusal = VerifierService.authorize(route, method: request.method, role: p.role) {
            if refusal.status == 403 {
                service.logger.warning("operation refused for this role", metadata: ["peer": "\(p)", "path": "\(request.uri)"])
            }
            return refusal
        }
        guard !request.bodyTooLarge else { return ServiceResponse(413, "request too large\n") }
        context.route = route
        context.requester = Requester(name: p.name, serial: p.serial, role: p.role, address: request.address,
                                      remoteHost: request.header("X-SmartOTP-RHost"), service: request.header("X-SmartOTP-Service"),
                                      requestID: request.header("X-SmartOTP-Request"))
        return await next(&context)
    }
}

extension VerifierService {
    /// Whether `role` may call `route` with `method`: nil when it may, else the refusal.
    /// Verdicts are for hosts only: an administrator's or the helpdesk's certificate is no
    /// host, and asking as one would turn an unlock into unlimited guesses.
    public static func authorize(_ route: FleetAPI.Route, method: String, role: FleetRole) -> ServiceResponse? {
        switch (route, method) {
        case (.health, "GET"): return nil
        case (.verify, "POST"):
            return role == .host ? nil : ServiceResponse(403, "verdicts are for host certificates only\n")
        case (.revoke, "POST"), (.hostAdd, "POST"):
            return role == .admin ? nil : ServiceResponse(403, "this needs an administrator's certificate\n")
        case (.hosts, "GET"):
            return role == .host ? ServiceResponse(403, "administration needs an administrator's or the helpdesk's certificate\n") : nil
        case (.renew, "POST"):
            return role == .host ? nil : ServiceResponse(403, "renewing is for host certificates\n")
        case (.join, "POST"):
            return ServiceResponse(403, "a host joins without a certificate; this one has one already (renew instead)\n")
        case (.users, "GET"), (.show, "GET"), (.audit, "GET"), (.revocations, "GET"):
            return role == .host ? ServiceResponse(403, "administration needs an administrator's or the helpdesk's certificate\n") : nil
        case (.change(let verb, _), "POST"):
            switch role {
            case .admin: return nil
            case .helpdesk where FleetAPI.helpdeskVerbs.contains(verb): return nil
            case .helpdesk: return ServiceResponse(403, "the helpdesk may not \(verb): it needs an administrator's certificate\n")
            case .host: return ServiceResponse(403, "administration needs an administrator's certificate\n")
            }
        default: return ServiceResponse(405, "method not allowed\n")
        }
    }
}

/// Where the fleet's budgets are kept, shared by every replica: units of a budget (a key:
/// the budget's name, the host's serial, perhaps the user) in a window (`bucket`), handed
/// out a few at a time. The ledger's adapters keep them (PostgreSQL's table, memory).
public protocol BudgetStore: Sendable {
    /// Takes up to `want` units of `key` in window `bucket`, never more than `limit` in all
    /// for that window (an earlier window's units are forgotten); how many it took, 0 when
    /// none is left.
    func lease(_ key: String, bucket: Int64, want: Int, limit: Int) async throws -> Int
}

/// Events one host certificate (by serial, or serial and user) causes in a window, against
/// a budget the whole fleet shares: a unit is reserved before the verdict it pays for, so a
/// burst of concurrent requests cannot all pass a check made before any of them was
/// counted, and what turned out not to cost (a verdict that was not a failure) is given
/// back. Units come from the fleet's store a lease at a time (a tenth of the budget, at
/// least one): the fleet never spends more than the budget in a window, whichever replicas
/// the host asks, and most reservations touch no database. Windows are aligned on Unix
/// time (a host may spend a window's budget at its end and the next one's at its start).
public final class HostBudget: Sendable {
    public let name: String
    public let limit: Budget?
    let store: any BudgetStore
    let clock: @Sendable () -> Int64
    /// Units leased and not yet spent, by key, in their window.
    let leases = Mutex([String: (bucket: Int64, units: Int)]())

    /// `clock`: Unix seconds (every replica's windows line up).
    public init(_ name: String, _ limit: Budget?, store: any BudgetStore, clock: @escaping @Sendable () -> Int64) {
        self.name = name
        self.limit = limit
        self.store = store
        self.clock = clock
    }

    /// A unit reserved: give it back with `refund`.
    public struct Reservation: Sendable {
        let key: String
        let bucket: Int64
    }

    /// Reserves one unit for `key` (a serial, or a serial and a user); nil when none is left
    /// (nothing reserved). Without a budget every request gets a unit that costs nothing.
    public func reserve(_ key: String) async throws -> Reservation? {
        guard let limit else { return Reservation(key: key, bucket: -1) }
        // A window is named by its start (Unix seconds), so that a row the fleet keeps for
        // it can be pruned by age whatever the window's length.
        let window = max(limit.window, 1)
        let bucket = clock() / window * window
        let taken = leases.withLock { all -> Bool in
            guard let l = all[key], l.bucket == bucket, l.units > 0 else { return false }
            all[key] = (bucket, l.units - 1)
            return true
        }
        if taken { return Reservation(key: key, bucket: bucket) }
        let got = try await store.lease(name + " " + key, bucket: bucket, want: max(1, limit.count / 10), limit: limit.count)
        guard got > 0 else { return nil }
        leases.withLock { all in
            if all.count > 10_000 { all = all.filter { $0.value.bucket >= bucket } }
            let kept = all[key].flatMap { $0.bucket == bucket ? $0.units : nil } ?? 0
            all[key] = (bucket, kept + got - 1)
        }
        return Reservation(key: key, bucket: bucket)
    }

    /// Gives a reserved unit back (to this replica's lease: the fleet's store already
    /// counts it, and the next reservation here takes it).
    public func refund(_ r: Reservation) {
        guard r.bucket >= 0 else { return }
        leases.withLock { all in
            guard let l = all[r.key], l.bucket == r.bucket else { return }
            all[r.key] = (l.bucket, l.units + 1)
        }
    }
}

/// A number of slots, taken and given back (the verdicts that hash at once).
public final class Slots: Sendable {
    public let count: Int
    let taken = Mutex(0)

    public init(_ count: Int) { self.count = count }

    /// Takes a slot; false when all are taken.
    public func take() -> Bool {
        taken.withLock { n in
            guard n < count else { return false }
            n += 1
            return true
        }
    }

    public func give() { taken.withLock { $0 = max(0, $0 - 1) } }
}
