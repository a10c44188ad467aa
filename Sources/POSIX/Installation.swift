internal import CPOSIX

/// Where the programs the module runs are installed, fixed when it is built
/// (`SMARTOTP_SBINDIR` in Package.swift: /usr/local/sbin for ./install.sh, /usr/sbin for
/// the Debian packages). Module options (`helper=`, `client=`) can name others; nothing in
/// the caller's environment can.
public enum Installation {
    /// The setuid helper, smartotp-chkotp.
    public static var helper: String { String(cString: cposix_helper_path()) }
    /// The fleet client, smartotp-fleet.
    public static var fleetClient: String { String(cString: cposix_fleet_client_path()) }
}
