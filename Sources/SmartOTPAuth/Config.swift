import OTPCore
import TokenStore
import Verifier

/// The ways a user can prove the second factor, in the order offered.
public enum Method: String, Sendable, CaseIterable {
    case card
    case code
    case password

    /// The method spelled `name` (`init(rawValue:)` compares as String's `==` does: see
    /// `String.equals`).
    public static func named(_ name: String) -> Method? { allCases.first { $0.rawValue.equals(name) } }
}

/// Module settings: `/etc/smartotp/smartotp.conf` first, then the arguments in
/// /etc/pam.d/* over it, as pam_faillock reads faillock.conf then its arguments. The module,
/// the setuid helper and `smartotp verify` load them the same way (`ModuleConfig.load` in
/// SmartOTPSystem), so one file gives sudo, sshd and a screen locker one policy. Two tables
/// name every setting: `ModuleConfig.options` the module's own, `Policy.options` the
/// verifier's policy.
public struct ModuleConfig: Sendable, Equatable {
    /// The policy file every caller reads first (`smartotp.conf(5)`).
    public static let defaultFile = "/etc/smartotp/smartotp.conf"

    public var store = FileStore.defaultRoot
    public var methods: [Method] = [.card, .code, .password]
    /// Seconds to wait for a tap.
    public var timeout = 30
    public var reader: String?
    /// The verifier's policy (skew, window, lock): its settings are `Policy.options`.
    public var policy = Policy()
    public var nullok = false
    /// `groups=`: only members of a listed group are asked, a member of a `!` group never
    /// (GroupPolicy); empty: everyone.
    public var groups: [GroupRule] = []
    public var tryFirstPass = false
    public var useFirstPass = false
    public var debug = false
    /// `helper=`: the setuid helper used when the module does not run as root; nil for
    /// the one installed beside the module (SmartOTPSystem knows where).
    public var helper: String?
    /// The fleet's verifiers (`server=https://HOST:PORT,…`), tried in order; none: the
    /// local store.
    public var servers: [String] = []
    /// The host's TLS identity for the fleet: ca.pem, cert.pem, key.pem (root-only).
    public var tlsDir = "/etc/smartotp/tls"
    /// `client=`: the program that asks the verifiers (a process of its own: no TLS in
    /// sshd or sudo); nil for the installed smartotp-fleet.
    public var client: String?
    /// `agent=`: the socket of root's fleet agent (`smartotp-fleet --agent`), which keeps a
    /// connection to the verifiers from one login to the next; nil (`agent=off`): always
    /// start the client. Where no agent listens, the client is started as without one.
    public var agent: String? = "/run/smartotp/fleet.sock"
    /// Seconds to get a verdict from the verifiers, all of them together.
    public var serverTimeout = 10
    /// `offline=tap`: after each accepted tap the fleet client keeps the stock of pairs the
    /// verifiers made for the card (a challenge and a verifier of the card's answer: never
    /// the answer, never the secret); while no verifier answers, a tap is checked against
    /// one pair, which it uses up (FleetClient). Typed codes and the simple password are
    /// never checked offline.
    public var offlineTap = false
    /// `offline_max_age=`: the oldest pair accepted, in seconds (7 days).
    public var offlineMaxAge: Int64 = 604_800
    /// `prompts=`: how the tap is asked for. `text` (a terminal: a message, then the
    /// wait, with reminders), `window` (a graphical locker or greeter, which holds every
    /// lone message up until it is clicked away: one dialog, "hold your card on the reader
    /// and press Enter, or type your code"), nil for `auto` (window when the application
    /// set PAM_XDISPLAY or a PAM_TTY that names an X display, ":0").
    public var windowPrompts: Bool?

    public init() {}

    /// One module argument: its name, whether it takes a value, what it means (for the
    /// man page and errors), and how it sets the config. The table below and the
    /// verifier's `Policy.options` are the only places an argument's name is written.
    public typealias Option = ConfigOption<ModuleConfig>

    /// The module's own settings. Both tables are literals, read-only data: nothing is
    /// built at each login to look a name up.
    public static let options: [Option] = [
        // Read before everything else (ModuleConfig.load); here only checked.
        // read this policy file instead of /etc/smartotp/smartotp.conf (the setuid helper always reads that one)
        Option(name: "conf", takesValue: true) { _, v throws(ConfigError) in
            _ = try v.absolutePath()
        },
        // directory of the user records (default /var/lib/smartotp)
        Option(name: "store", takesValue: true) { c, v throws(ConfigError) in
            c.store = try v.absolutePath()
        },
        // ways offered, in order: card,code,password (default all three)
        Option(name: "methods", takesValue: true) { c, v throws(ConfigError) in
            var list: [Method] = []
            for item in v.text.splitBytes(UInt8(ascii: ","), omittingEmpty: false) {
                guard let m = Method.named(item), !list.contains(m) else {
                    throw .badValue(name: v.name, value: v.text, expected: "a list of card, code, password")
                }
                list.append(m)
            }
            guard !list.isEmpty else { throw .badValue(name: v.name, value: v.text, expected: "a list of card, code, password") }
            c.methods = list
        },
        // seconds to wait for a tap, 1-600 (default 30)
        Option(name: "timeout", takesValue: true) { c, v throws(ConfigError) in
            c.timeout = try v.int(1...600)
        },
        // use only readers whose name contains this text
        Option(name: "reader", takesValue: true) { c, v throws(ConfigError) in
            guard !v.text.isEmpty, v.text.utf8.count <= 128 else { throw .badValue(name: v.name, value: v.text, expected: "part of a reader name") }
            c.reader = v.text
        },
        // a user without a record in an existing store is ignored (PAM_IGNORE)
        Option(name: "nullok", takesValue: false) { c, _ throws(ConfigError) in
            c.nullok = true
        },
        // GROUP[,!GROUP…]: ask only members of a listed group, never a member of a ! group;
        // everyone else is ignored (PAM_IGNORE), as pam_duo's groups=
        Option(name: "groups", takesValue: true) { c, v throws(ConfigError) in
            c.groups = try v.list(UInt8(ascii: ","), expected: "GROUP[,!GROUP…] (names of groups, ! before one to leave its members out)") { item in
                GroupRule(item)
            }
        },
        // try PAM_AUTHTOK from an earlier module as a one-time code, then prompt
        Option(name: "try_first_pass", takesValue: false) { c, _ throws(ConfigError) in
            c.tryFirstPass = true
        },
        // only PAM_AUTHTOK from an earlier module, as a one-time code; never prompt
        Option(name: "use_first_pass", takesValue: false) { c, _ throws(ConfigError) in
            c.useFirstPass = true
        },
        // log each step to syslog at debug level
        Option(name: "debug", takesValue: false) { c, _ throws(ConfigError) in
            c.debug = true
        },
        // setuid helper for callers that are not root (default: smartotp-chkotp where it was installed)
        Option(name: "helper", takesValue: true) { c, v throws(ConfigError) in
            c.helper = try v.absolutePath()
        },
        // the fleet's verifiers, https://HOST:PORT[,…] tried in order (default: none, the local store)
        Option(name: "server", takesValue: true) { c, v throws(ConfigError) in
            c.servers = try v.serverList()
        },
        // the host's TLS identity for server=: ca.pem, cert.pem, key.pem (default /etc/smartotp/tls)
        Option(name: "tls_dir", takesValue: true) { c, v throws(ConfigError) in
            c.tlsDir = try v.absolutePath()
        },
        // the program that asks the verifiers (default: smartotp-fleet where it was installed)
        Option(name: "client", takesValue: true) { c, v throws(ConfigError) in
            c.client = try v.absolutePath()
        },
        // with server=: root's fleet agent to ask first, or off (default /run/smartotp/fleet.sock; none listening: the client is started)
        Option(name: "agent", takesValue: true) { c, v throws(ConfigError) in
            c.agent = v.text.equals("off") ? nil : try v.absolutePath()
        },
        // with server=: tap lets a tap log in while no verifier answers, against a pair kept after the last online tap (default no)
        Option(name: "offline", takesValue: true) { c, v throws(ConfigError) in
            guard v.text.equals("tap") || v.text.equals("no") else { throw .badValue(name: v.name, value: v.text, expected: "tap or no") }
            c.offlineTap = v.text.equals("tap")
        },
        // the oldest offline pair accepted: seconds, or a number with m, h or d (default 7d)
        Option(name: "offline_max_age", takesValue: true) { c, v throws(ConfigError) in
            c.offlineMaxAge = try v.duration(60...31_536_000)
        },
        // text, window or auto: how the tap is asked for; window is one dialog, hold the card and press Enter or type a code (default auto: window where PAM_XDISPLAY or an X display as PAM_TTY is set)
        Option(name: "prompts", takesValue: true) { c, v throws(ConfigError) in
            if v.text.equals("auto") { c.windowPrompts = nil }
            else if v.text.equals("text") { c.windowPrompts = false }
            else if v.text.equals("window") { c.windowPrompts = true }
            else { throw .badValue(name: v.name, value: v.text, expected: "text, window or auto") }
        },
        // seconds to get a verdict from the verifiers, all together; none answering fails closed (default 10)
        Option(name: "server_timeout", takesValue: true) { c, v throws(ConfigError) in
            c.serverTimeout = try v.int(1...300)
        },
    ]

    /// The result of parsing: the config, and arguments that were not understood.
    public struct Parsed: Sendable {
        public var config: ModuleConfig
        /// Unknown argument names: logged and ignored, as pam_unix does.
        public var unknown: [String]
    }

    /// One argument split at its first `=` (the verifier's `Setting`: one split rule).
    public typealias Argument = Setting

    /// Parses module arguments over `base`. A known argument with a malformed value throws
    /// (the module then fails safe with PAM_SERVICE_ERR); an unknown one is reported in
    /// `unknown`.
    public static func parse(_ arguments: [String], over base: ModuleConfig = ModuleConfig()) throws(ConfigError) -> Parsed {
        try parse(arguments: arguments.map(Argument.init), over: base)
    }

    /// The same, from arguments already split (the module splits the C strings PAM gives
    /// it, with no whole-argument String between).
    public static func parse(arguments: [Argument], over base: ModuleConfig = ModuleConfig()) throws(ConfigError) -> Parsed {
        var c = base
        var unknown: [String] = []
        for arg in arguments {
            if try options.apply(arg, to: &c) { continue }
            if try Policy.options.apply(arg, to: &c.policy) { continue }
            unknown.append(arg.reported)
        }
        return Parsed(config: c, unknown: unknown)
    }

    /// The settings of a policy file's words with `arguments` over them: each argument wins
    /// over the file for this service only. A malformed value in the file is reported as
    /// the file's; unknown names from either are returned, to be logged.
    public static func parse(file path: String, words: [String], arguments: [Argument]) throws(ConfigError) -> Parsed {
        let fromFile: Parsed
        do throws(ConfigError) { fromFile = try parse(arguments: words.map(Setting.init)) } catch {
            throw .unreadableFile(path: path, reason: error.description)
        }
        var parsed = try parse(arguments: arguments, over: fromFile.config)
        parsed.unknown = fromFile.unknown.map { path + ": " + $0 } + parsed.unknown
        return parsed
    }

    /// The policy file `arguments` name with `conf=` (the last one), else `defaultFile`.
    /// Checked before anything is opened: an absolute path, never one relative to the
    /// host process's working directory.
    public static func file(named arguments: [Argument], default file: String = defaultFile) throws(ConfigError) -> String {
        guard let conf = arguments.last(where: { $0.name.equals("conf") }) else { return file }
        return try OptionValue(option: "conf", takesValue: true, text: conf.value).absolutePath()
    }
}

extension OptionValue {
    /// `https://HOST[:PORT]` pieces separated by commas (checked again by the client).
    func serverList() throws(ConfigError) -> [String] {
        try list(UInt8(ascii: ","), expected: "https://HOST[:PORT][,https://…]") { u in
            let b = Array(u.utf8)
            return b.count > 8 && b.count < 256 && u.utf8.begins(with: "https://")
                && b.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "@") }) ? u : nil
        }
    }
}
