import OTPCore
import POSIX
import SmartOTPAuth
import TokenStore
import Verifier

/// The record service of a fleet host: the fleet client (`smartotp-fleet --session`) asks
/// the verifiers, and with `offline=tap` decides a tap itself while none answers. One
/// client process, and one TLS connection, serve a whole login (summary, challenge,
/// verdict): the process starts at the first request and ends with this object. The module
/// loads no TLS library, starts no thread and keeps no fleet state: it sends each request
/// in the verifier's `Frame` and reads the answer, as it would ask the setuid helper.
///
/// The client gets the module's own settings (its arguments, over smartotp.conf, which it
/// reads itself), and PAM's service and remote host for the fleet's audit trail.
///
/// Where root runs the fleet agent (`smartotp-fleet --agent`, `agent=`), the session is the
/// agent's instead: no process started and its TLS connection kept from an earlier login.
/// The agent gets the same arguments, in the first frame, and welcomes the session before
/// any request goes; without its welcome (none there, busy, settings it cannot serve), the
/// client is started as before, so an agent can only make a login faster.
public final class SessionRecords: HelperSpeaking {
    public let path: String
    public let arguments: [String]
    /// The agent's socket (nil: always start the client).
    public let agent: String?
    /// How long the agent may take over one request, after its welcome: twice the
    /// verifiers' deadline (a summary may ask them twice: the offline report) and 10 s more.
    let agentSeconds: Int32
    private var session: Session?

    /// `settings`: the module's arguments, as PAM gave them; `serverTimeout`: theirs.
    public init(client: String, agent: String? = nil, serverTimeout: Int = 10, service: String = "", remoteHost: String = "", settings: [Setting] = []) {
        path = client
        self.agent = agent
        agentSeconds = Int32(clamping: 2 * serverTimeout + 10)
        var arguments = ["--session"]
        if !service.isEmpty { arguments += ["--service", service] }
        if !remoteHost.isEmpty { arguments += ["--rhost", remoteHost] }
        arguments.append("--")
        for s in settings { arguments.append(s.value.map { s.name + "=" + $0 } ?? s.name) }
        self.arguments = arguments
    }

    /// One request frame out (`Frame.requestPayload`), one answer frame back.
    public func answer(_ request: HelperProtocol.Request, for user: UserName) throws(RecordError) -> String {
        let text: String
        do throws(SystemCallError) {
            if session == nil, let agent {
                // The arguments NUL-separated: none can hold a NUL, so no value (PAM's remote
                // host is the client's to choose) can become a setting of its own.
                var hello: [UInt8] = []
                for word in arguments { hello += word.utf8; hello.append(0) }
                session = Session(agent: agent, hello: Frame.encode(hello), welcome: Frame.encode(Array(FleetAgent.welcome.utf8)),
                                  seconds: agentSeconds)
            }
            if session == nil { session = try Session(path, arguments) }
            guard let session else { throw SystemCallError("posix_spawn", path, errno: 0) }
            var payload = Frame.requestPayload(request, for: user)
            var frame = Frame.encode(payload)
            ConstantTime.wipe(&payload)
            defer { ConstantTime.wipe(&frame) }
            try session.send(frame)
            var header = Frame.Header(limit: WireLimits.answer)
            var length: Int?
            while length == nil {
                let byte = try session.receive(1)
                do throws(FrameError) { length = try header.feed(byte.first ?? 0) } catch {
                    throw SystemCallError("read", path, errno: Errno.protocolError)
                }
            }
            text = String(decoding: try session.receive(length ?? 0), as: UTF8.self)
        } catch {
            // A client that failed once is not asked again: the next request starts anew.
            session = nil
            throw .verifier(path + ": no verdict from the fleet (" + error.description + ")")
        }
        // The client's last word when it got no verdict (and decided nothing offline).
        if let why = FleetNotice.read(text) {
            session = nil
            throw .verifier(path + ": no verdict from the fleet (" + why + ")")
        }
        return text
    }
}
