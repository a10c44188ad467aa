/// Where cards are presented: the readers a card can be put in. PC/SC is one (the PCSC
/// target); tests use fakes. The tap loop (SmartOTPSystem) is written against this, so
/// its waiting and skipping is tested without pcscd.
public protocol CardSlots {
    associatedtype Card: CardTransport

    /// The reader names whose name contains `filter` (all when nil), without waiting.
    func readers(matching filter: String?) throws(CardError) -> [String]

    /// Waits up to `timeoutMs` for a card in a reader matching `filter` and not in `skip`
    /// (readers whose card was tried and was not the right one; a reader leaves `skip`
    /// when its card is taken away). Returns that reader; throws `.timeout` at the end.
    /// (An array, not a Set: a handful of readers, and no hashing code in the module.)
    func waitForCard(filter: String?, skip: inout [String], timeoutMs: Int, now: () -> Int) throws(CardError) -> String

    /// Connects to the card in `reader`.
    func connect(reader: String) throws(CardError) -> Card
}
