import CPAM
import PamShim
internal import CPOSIX
import SmartOTPAuth
import Verifier

/// The only code that sees libpam's C pointers. Every call names the libpam function it
/// wraps; nothing here trusts a pointer or a string that came from the application.
struct PamHandle {
    let raw: OpaquePointer
    /// The management group the module was called for, as log lines name it ("auth",
    /// "account").
    var step: StaticString = "auth"

    /// Longest conversation answer read: beyond it the answer is refused unread (a 1 MiB
    /// "password" must not cost the host process anything but a failed login).
    /// Read one byte past the limit, so that the flow can tell "too long" from "at the limit".
    static let maxAnswerBytes = AnswerLimit.bytes + 1

    /// `pam_get_user`. nil when libpam cannot tell the user.
    func user() -> String? {
        var name: UnsafePointer<CChar>?
        guard pam_get_user(raw, &name, nil) == PAM_SUCCESS, let name else { return nil }
        return Self.boundedString(name, max: 1024)
    }

    /// `pam_get_item` for a string item (PAM_SERVICE, PAM_RHOST, PAM_AUTHTOK).
    func item(_ type: Int32) -> String? {
        var value: UnsafeRawPointer?
        guard pam_get_item(raw, type, &value) == PAM_SUCCESS, let value else { return nil }
        return Self.boundedString(value.assumingMemoryBound(to: CChar.self), max: Self.maxAnswerBytes)
    }

    /// strnlen(3), written out: answers are short, and one libc import fewer is one symbol
    /// lookup fewer each time a host loads the module.
    static func boundedLength(_ p: UnsafePointer<CChar>, _ max: Int) -> Int {
        var n = 0
        while n < max && p[n] != 0 { n += 1 }
        return n
    }

    /// Reads at most `max` bytes of a C string; a longer one is returned cut to `max + 1`
    /// bytes so that length checks fail it. Invalid UTF-8 is replaced, so it can never
    /// match a code or a password.
    static func boundedString(_ p: UnsafePointer<CChar>, max: Int) -> String {
        let length = boundedLength(p, max + 1)
        return p.withMemoryRebound(to: UInt8.self, capacity: length) {
            String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
        }
    }

    /// A line as `pam_syslog(pamh, priority, "%s", text)` writes it (auth facility,
    /// "pam_smartotp(SERVICE:STEP): "), through the C shim.
    func syslog(_ priority: Int32, _ text: String) {
        var value: UnsafeRawPointer?
        let service = pam_get_item(raw, PAM_SERVICE, &value) == PAM_SUCCESS ? value?.assumingMemoryBound(to: CChar.self) : nil
        let unknown: StaticString = "?"
        let serviceName = service ?? UnsafeRawPointer(unknown.utf8Start).assumingMemoryBound(to: CChar.self)
        // A StaticString's bytes are NUL-terminated.
        let stepName = UnsafeRawPointer(step.utf8Start).assumingMemoryBound(to: CChar.self)
        text.withCString { smartotp_pam_syslog(serviceName, stepName, priority, $0) }
    }
}

/// The application's conversation function as a `Prompter`.
struct PamConversation: Prompter {
    let pam: PamHandle
    /// PAM_SILENT: the application asked for no informational or error messages (sudo
    /// does by default, as pam_faillock's lock message is silenced too); prompts and the
    /// instruction to tap or touch, without which the user could not log in, still go out.
    var silent = false

    func info(_ text: String) { if !silent { _ = converse(PAM_TEXT_INFO, text) } }
    func instruct(_ text: String) { _ = converse(PAM_TEXT_INFO, text) }
    func error(_ text: String) { if !silent { _ = converse(PAM_ERROR_MSG, text) } }
    func askSecret(_ prompt: String) -> String? { converse(PAM_PROMPT_ECHO_OFF, prompt) }
    func askSecret(_ prompt: String, after note: String) -> String? { converse(PAM_PROMPT_ECHO_OFF, prompt, after: note) }

    /// Sends one message through PAM_CONV, after `note` (PAM_TEXT_INFO) in the same call
    /// when there is one. Returns the answer to the last message ("" for messages that get
    /// none), or nil when there is no conversation or it failed. The answers are wiped and
    /// freed here, as the application malloc'd them for us.
    func converse(_ style: Int32, _ text: String, after note: String? = nil) -> String? {
        var item: UnsafeRawPointer?
        guard pam_get_item(pam.raw, PAM_CONV, &item) == PAM_SUCCESS, let item else { return nil }
        let conv = item.assumingMemoryBound(to: pam_conv.self).pointee
        guard let function = conv.conv else { return nil }
        return text.withCString { cText -> String? in
            (note ?? "").withCString { cNote -> String? in
                // Linux-PAM's layout: an array of pointers to messages.
                var first = pam_message(msg_style: PAM_TEXT_INFO, msg: cNote)
                var last = pam_message(msg_style: style, msg: cText)
                return withUnsafePointer(to: &first) { firstPointer -> String? in
                    withUnsafePointer(to: &last) { lastPointer -> String? in
                        var list: (UnsafePointer<pam_message>?, UnsafePointer<pam_message>?) =
                            note == nil ? (lastPointer, nil) : (firstPointer, lastPointer)
                        let count: Int32 = note == nil ? 1 : 2
                        return withUnsafeMutablePointer(to: &list) { listPointer -> String? in
                            listPointer.withMemoryRebound(to: Optional<UnsafePointer<pam_message>>.self, capacity: 2) { messages -> String? in
                                var response: UnsafeMutablePointer<pam_response>?
                                let rc = function(count, messages, &response, conv.appdata_ptr)
                                defer { Self.release(response, count: Int(count)) }
                                guard rc == PAM_SUCCESS else { return nil }
                                guard style == PAM_PROMPT_ECHO_OFF || style == PAM_PROMPT_ECHO_ON else { return "" }
                                guard let response, let answer = response[Int(count) - 1].resp else { return nil }
                                return PamHandle.boundedString(answer, max: PamHandle.maxAnswerBytes)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Wipes and frees a response array of `count` elements.
    static func release(_ response: UnsafeMutablePointer<pam_response>?, count: Int) {
        guard let response else { return }
        for i in 0..<count {
            if let answer = response[i].resp {
                explicit_bzero(answer, PamHandle.boundedLength(answer, 1 << 20))
                free(answer)
            }
        }
        free(response)
    }
}

/// Audit events to syslog through `pam_syslog`, at honest levels; debug lines only with `debug`.
struct PamAudit: AuditLog {
    let pam: PamHandle
    let debugEnabled: Bool

    func record(_ event: AuditEvent) {
        let priority: Int32
        switch event.result {
        case .success: priority = LOG_INFO
        case .failure, .locked: priority = LOG_NOTICE
        case .error: priority = LOG_ERR
        case .skipped:
            guard debugEnabled else { return }
            priority = LOG_DEBUG
        }
        pam.syslog(priority, event.description)
    }

    func debug(_ text: String) {
        if debugEnabled { pam.syslog(LOG_DEBUG, text) }
    }
}
