import OTPCore
import TokenStore

/// The verifier's policy: the TOTP skew, the HOTP window and the lock. One value decides
/// for every caller (the module, the setuid helper, `smartotp verify`, smartotpd), read
/// from one table of settings, `Policy.options`, whose names the module's arguments,
/// smartotp.conf and smartotpd's `policy =` line all use.
public struct Policy: Sendable, Equatable {
    public var skew: Int
    public var window: Int
    public var lock: LockPolicy

    public init(skew: Int = 1, window: Int = 20, lock: LockPolicy = LockPolicy()) {
        self.skew = skew
        self.window = window
        self.lock = lock
    }

    /// One setting of the policy (the grammar every configuration shares: Settings.swift).
    public typealias Option = ConfigOption<Policy>

    static let year = 31_536_000

    /// The policy's settings: the one list of their names.
    public static let options: [Option] = [
        // TOTP steps accepted either side of now, 0-10 (default 1)
        Option(name: "skew", takesValue: true) { p, v throws(ConfigError) in
            p.skew = try v.int(0...10)
        },
        // HOTP look-ahead, 1-1000 (default 20)
        Option(name: "window", takesValue: true) { p, v throws(ConfigError) in
            p.window = try v.int(1...1000)
        },
        // lock after this many failures within fail_interval, 0 = never (default 5)
        Option(name: "deny", takesValue: true) { p, v throws(ConfigError) in
            p.lock.deny = try v.int(0...1000)
        },
        // how long failures add up: seconds, or a number with s, m, h or d, 1s-365d (default 15m)
        Option(name: "fail_interval", takesValue: true) { p, v throws(ConfigError) in
            p.lock.failInterval = try v.duration(1...Int64(year))
        },
        // how long a lock lasts after the last failure (a duration), 0 = until smartotp unlock (default 10m)
        Option(name: "unlock_time", takesValue: true) { p, v throws(ConfigError) in
            p.lock.unlockTime = try v.duration(0...Int64(year))
        },
        // root can be locked too (by default root is never locked)
        Option(name: "even_deny_root", takesValue: false) { p, _ throws(ConfigError) in
            p.lock.evenDenyRoot = true
        },
        // with even_deny_root: how long root's lock lasts (a duration; default unlock_time)
        Option(name: "root_unlock_time", takesValue: true) { p, v throws(ConfigError) in
            p.lock.rootUnlockTime = try v.duration(0...Int64(year))
        },
    ]

    /// The policy of `words` (`deny=3 unlock_time=60 …`) over the defaults: smartotpd's
    /// `policy =` line. Anything that is not a policy setting is refused, naming the ones
    /// that are.
    public static func parse(_ words: [String]) throws(ConfigError) -> Policy {
        var policy = Policy()
        for word in words {
            let setting = Setting(word)
            guard try options.apply(setting, to: &policy) else {
                throw .badValue(name: setting.name, value: setting.value ?? "", expected: "a policy setting (" + options.names() + ")")
            }
        }
        return policy
    }
}

