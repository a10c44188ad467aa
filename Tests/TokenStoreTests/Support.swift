import Foundation
import Glibc
@testable import TokenStore
import OTPCore

/// A private store directory, owned by whoever runs the tests, removed afterwards.
final class TempStore {
    let root: String
    let store: FileStore

    init() throws {
        var template = Array("/tmp/smartotp-test-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { throw StoreError.invalidValue("mkdtemp failed") }
        root = String(cString: dir) + "/store"
        store = FileStore(root: root, owner: geteuid())
        try store.prepare()
    }

    deinit {
        let parent = (root as NSString).deletingLastPathComponent
        try? FileManager.default.removeItem(atPath: parent)
    }
}

func makeTOTPToken(id: String = "phone", secret: [UInt8] = Array("12345678901234567890".utf8), created: Int64 = 1_700_000_000) -> Token {
    Token(id: id, kind: .code, parameters: try! OTPParameters(kind: .totp(period: 30)), secret: SecretBytes(secret), created: created)
}

/// Path of an executable built by this package (swift test builds every target).
func builtExecutable(_ name: String, file: StaticString = #filePath) -> String {
    let packageRoot = URL(fileURLWithPath: "\(file)").deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let bin = Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent(name).path
    if FileManager.default.isExecutableFile(atPath: bin) { return bin }
    for config in ["debug", "release"] {
        let p = packageRoot.appendingPathComponent(".build/\(config)/\(name)").path
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return bin
}
