import Testing
import OTPCore

/// Compares codes with oathtool (the OATH Toolkit, an independent implementation) for
/// random secrets, digits, periods, algorithms and times. CI installs oathtool; the
/// test fails, rather than skips, if it is missing there.
@Suite("Cross-check with oathtool")
struct OathtoolCrossCheckTests {
    static let oathtool = "/usr/bin/oathtool"

    @Test func randomTOTPAndHOTPMatchOathtool() throws {
        try #require(run(Self.oathtool, ["--version"]) != nil, "install oathtool (apt-get install oathtool)")
        var rng = SystemRandomNumberGenerator()
        for round in 0..<40 {
            let length = Int.random(in: 10...64, using: &rng)
            let secret = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let hex = Hex.encode(secret)
            let digits = Int.random(in: 6...8, using: &rng)
            let algorithm = HashAlgorithm.allCases[round % 3]
            let key = SecretBytes(secret)
            if round % 2 == 0 {
                let period = [15, 30, 60, 90][Int.random(in: 0...3, using: &rng)]
                let time = Int64.random(in: 0...4_000_000_000, using: &rng)
                let step = try #require(OTP.timeStep(at: time, period: period))
                let params = try OTPParameters(kind: .totp(period: period), algorithm: algorithm, digits: digits)
                let ours = OTP.code(secret: key, parameters: params, counter: step)
                let theirs = run(Self.oathtool, ["--totp=\(algorithm)", "--digits=\(digits)", "--time-step-size=\(period)s",
                                                 "--now=@\(time)", hex])
                #expect(ours == theirs, "totp \(algorithm) digits \(digits) period \(period) time \(time)")
            } else {
                let counter = UInt64.random(in: 0...1_000_000_000, using: &rng)
                let ours = OTP.hotp(secret: key, counter: counter, algorithm: .sha1, digits: digits)
                let theirs = run(Self.oathtool, ["--hotp", "--digits=\(digits)", "--counter=\(counter)", hex])
                #expect(ours == theirs, "hotp digits \(digits) counter \(counter)")
            }
        }
    }
}
