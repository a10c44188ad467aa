/// The longest answer (a code, a password) the module takes from the conversation and the
/// verifier checks, in bytes: the one limit, used by the PAM layer (which reads at most one
/// byte more, to tell "too long" apart), the flow and the record service.
public enum AnswerLimit {
    public static let bytes = 1024
}
