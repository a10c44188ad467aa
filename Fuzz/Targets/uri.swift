// libFuzzer target: otpauth:// URIs, Base32 and hex, as a phone app or an admin types them.
import OTPCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
    if let uri = try? OTPAuthURI.parse(text) {
        guard let back = try? OTPAuthURI.parse(uri.format()), back.parameters == uri.parameters, back.account == uri.account else {
            fatalError("URI does not round-trip")
        }
    }
    if let bytes = try? Base32.decode(text) {
        guard (try? Base32.decode(Base32.encode(bytes))) == bytes else { fatalError("Base32 does not round-trip") }
    }
    _ = try? Hex.decode(text)
    _ = OTPAuthURI.percentDecode(text)
    return 0
}
