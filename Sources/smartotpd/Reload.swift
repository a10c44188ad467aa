import Logging
import NIOConcurrencyHelpers
import NIOSSL
import ServiceLifecycle
import SmartOTPService
import UnixSignals

/// The TLS context new connections get: replaced on SIGHUP; connections already open keep
/// the one they began with.
final class TLSReloader: Sendable {
    private let box: NIOLockedValueBox<NIOSSLContext>
    init(_ context: NIOSSLContext) { box = NIOLockedValueBox(context) }
    var current: NIOSSLContext { box.withLockedValue { $0 } }
    func replace(_ context: NIOSSLContext) { box.withLockedValue { $0 = context } }
}

/// SIGHUP: the configuration file read again for its certificate, key and CA files
/// (tls_cert, tls_key, client_ca, admin_ca, helpdesk_ca); new connections get them, no
/// connection is dropped. Anything that cannot be read keeps what runs, and says why.
/// Other settings take a restart.
struct Reloader: Service {
    let path: String
    let tls: TLSReloader
    let service: VerifierService
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            do {
                let config = try loadConfig(path)
                try checkReadable(config)
                let identifier = try loadIdentifier(config)
                let context = try serverTLS(config)
                service.replace(identifier: identifier)
                tls.replace(context)
                logger.notice("reloaded the certificate, key and CAs (SIGHUP)", metadata: ["tls_cert": "\(config.tlsCert)"])
            } catch {
                logger.error("SIGHUP: nothing reloaded, the running certificates stay", metadata: ["error": "\(error)"])
            }
        }
    }
}
