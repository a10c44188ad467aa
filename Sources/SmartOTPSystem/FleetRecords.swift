import OTPCore
import POSIX
import SmartOTPAuth
import TokenStore
import Verifier

/// The record service of a fleet host: the fleet client (`smartotp-fleet --session`) asks
/// the verifiers over mutual TLS. One client process and one TLS connection serve a whole
/// login (summary, challenge, verdict): the process is started at the first request and
/// ends with this object. The module itself loads no TLS library and starts no thread.
public final class FleetRecords: HelperSpeaking {
    public let path: String
    let arguments: [String]
    private var session: Session?

    /// `service` and `remoteHost` (PAM's, for the fleet's audit trail) go on the client's
    /// command line when known: they are not secret.
    public init(_ config: ModuleConfig, service: String = "", remoteHost: String = "") {
        path = config.client ?? Installation.fleetClient
        var servers = ""
        for s in config.servers { servers += servers.isEmpty ? s : "," + s }
        var arguments = ["--server", servers, "--tls-dir", config.tlsDir, "--timeout", msg("\(config.serverTimeout)"), "--session"]
        if !service.isEmpty { arguments += ["--service", service] }
        if !remoteHost.isEmpty { arguments += ["--rhost", remoteHost] }
        self.arguments = arguments
    }

    /// One request frame out (`Frame.requestPayload`), one answer frame back.
    public func answer(_ request: HelperProtocol.Request, for user: UserName) throws(RecordError) -> String {
        do throws(SystemCallError) {
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
            return String(decoding: try session.receive(length ?? 0), as: UTF8.self)
        } catch {
            // A client that failed once is not asked again: the next request starts anew.
            session = nil
            throw .verifier(path + ": no verdict from the fleet (" + error.description + ")")
        }
    }
}
