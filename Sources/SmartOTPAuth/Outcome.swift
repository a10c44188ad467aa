/// How a login ended, before it becomes a PAM code (PamSmartOTP maps each case to exactly one).
public enum Outcome: Sendable, Equatable {
    /// PAM_SUCCESS.
    case success(Method)
    /// PAM_AUTH_ERR: wrong or replayed code, wrong password, card refused, nothing usable.
    case failure(String)
    /// PAM_MAXTRIES: locked after `deny` failures.
    case locked
    /// PAM_USER_UNKNOWN: no record (without nullok), or a name that cannot be a user.
    case userUnknown(String)
    /// PAM_IGNORE: no record and nullok.
    case ignore
    /// PAM_AUTHINFO_UNAVAIL: the store cannot be read (permissions, malformed record, I/O).
    case unavailable(String)
    /// PAM_CONV_ERR: the application's conversation function failed.
    case conversationError
    /// PAM_SERVICE_ERR: the module is misconfigured.
    case serviceError(String)
}
