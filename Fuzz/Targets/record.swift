// libFuzzer target: the record parser, user names, and the importers of pam_oath and
// google-authenticator files — all text an attacker might plant or corrupt.
import TokenStore
import SmartOTPAdmin

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
    if let record = try? RecordFormat.parse(text, path: "fuzz") {
        // What parses must serialise and parse back to the same text.
        let again = RecordFormat.serialise(record)
        guard let back = try? RecordFormat.parse(again, path: "fuzz"), RecordFormat.serialise(back) == again else {
            fatalError("record does not round-trip")
        }
    }
    _ = try? UserName(text)
    _ = try? Importers.pamOath(text, path: "fuzz", now: 0)
    if let user = try? UserName("fuzz") { _ = try? Importers.googleAuthenticator(text, path: "fuzz", user: user, now: 0) }
    return 0
}
