// libFuzzer target: PAM module arguments (split at NUL, as argv) and the typed-code
// normaliser the flow applies to conversation answers.
import OTPCore
import SmartOTPAuth
import Verifier

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> Int32 {
    let bytes = UnsafeBufferPointer(start: start, count: count)
    let args = bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    _ = try? ModuleConfig.parse(args)
    let text = String(decoding: bytes, as: UTF8.self)
    for digits in 6...8 { _ = OTP.typedValue(text, digits: digits) }
    _ = RecoveryCode.normalise(text)
    return 0
}
