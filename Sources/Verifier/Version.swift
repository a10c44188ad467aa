/// The release, in one place: the CLI's --version, the packages and the man pages use it.
public enum SmartOTPVersion {
    public static let current = "0.3.0"
}
