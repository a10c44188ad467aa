// swift-tools-version:6.0
//
// smartotp — two-factor login for Linux with a smart OTP card.
// The targets are the architecture (../shared/ARCHITECTURE.md):
//
//   PamSmartOTP ─┬─▶ SmartOTPAuth ──▶ SmartCard, TokenStore ──▶ OTPCore     (decisions, pure)
//                └─▶ SmartOTPSystem ─▶ PCSC, POSIX                          (the real world)
//
// SmartOTPAuth decides and talks to the world only through its ports (Prompter,
// CardReader, RecordService, Clock, AuditLog); SmartOTPSystem implements them with
// pcscd (PCSC), the setuid helper and the clock (POSIX). Linux only.
//
// Nothing the PAM module links may import Foundation: the module is loaded into
// sshd and sudo, where a statically linked Foundation costs 17 MB and millions of
// instructions per login. Only the CLIs, the benchmarks and the tests use it.

import PackageDescription

/// Link flags of the PAM module, the only shared object this package ships.
/// - `-static-stdlib`: sshd has no Swift runtime to lend us.
/// - `-z nodelete`: libpam dlcloses modules, and the Swift runtime cannot be unloaded.
/// - the version script: only the `pam_sm_*` entry points are visible.
/// - libstdc++ from its static archive (see the linker wrapper for why and how).
let moduleLinkFlags: [String] = [
    "-static-stdlib",
    "-Xclang-linker", "-fuse-ld=\(Context.packageDirectory)/Sources/PamSmartOTP/link-static-libstdc++.sh",
    "-Xlinker", "-z", "-Xlinker", "nodelete",
    "-Xlinker", "-z", "-Xlinker", "now",
    "-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/PamSmartOTP/exports.map",
]

let package = Package(
    name: "smartotp",
    products: [
        .library(name: "pam_smartotp", type: .dynamic, targets: ["PamSmartOTP"]),
        .executable(name: "smartotp", targets: ["smartotp"]),
        .executable(name: "smartotp-card", targets: ["smartotp-card"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // One system-library target per C library. (libcrypto is used by the tests only,
        // as a reference: the module computes SHA and HMAC itself, see OTPCore/SHA.swift.)
        .systemLibrary(name: "CLibCrypto", path: "Sources/CLibCrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CPAM", path: "Sources/CPAM", providers: [.apt(["libpam0g-dev"])]),
        // pcsclite's headers include each other as <pcsclite.h>, so they need
        // -I/usr/include/PCSC (set on SmartCard, which imports this module internally).
        .systemLibrary(name: "CPCSC", path: "Sources/CPCSC", providers: [.apt(["libpcsclite-dev"])]),
        .systemLibrary(name: "CCrypt", path: "Sources/CCrypt", providers: [.apt(["libcrypt-dev"])]),
        .systemLibrary(name: "CQREncode", path: "Sources/CQREncode", providers: [.apt(["libqrencode-dev"])]),

        // The one C target for what Swift cannot call (errno, variadic open/fcntl), and the
        // POSIX layer over it: typed descriptors, one EINTR loop, processes, users, clocks.
        .target(name: "CPOSIX"),
        .target(name: "POSIX", dependencies: ["CPOSIX"]),

        // The layers the module links (no Foundation).
        // Pure: its only libc calls are explicit_bzero and arc4random_buf.
        .target(name: "OTPCore", dependencies: ["CPOSIX"]),
        // Transport → ISO 7816 → YKOATH; knows nothing of PC/SC.
        .target(name: "SmartCard", dependencies: ["OTPCore"]),
        // pcsclite's headers include each other as <pcsclite.h>, so they need -I/usr/include/PCSC.
        .target(
            name: "PCSC",
            dependencies: ["SmartCard", "CPCSC"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I/usr/include/PCSC"])]
        ),
        .target(name: "TokenStore", dependencies: ["OTPCore", "POSIX", "CCrypt"]),
        .target(name: "SmartOTPAuth", dependencies: ["OTPCore", "SmartCard", "TokenStore"]),
        .target(
            name: "SmartOTPSystem",
            dependencies: ["SmartOTPAuth", "SmartCard", "PCSC", "TokenStore", "OTPCore", "POSIX"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I/usr/include/PCSC"])]
        ),
        // The one C function the module needs: a fixed-arity pam_syslog.
        // DWARF 4: valgrind 3.19 (Debian 12), used by the benchmarks, cannot read clang's DWARF 5.
        .target(name: "PamShim", dependencies: ["CPAM"], cSettings: [.unsafeFlags(["-gdwarf-4"])]),
        .target(
            name: "PamSmartOTP",
            dependencies: ["SmartOTPSystem", "SmartOTPAuth", "TokenStore", "POSIX", "CPOSIX", "CPAM", "PamShim"],
            exclude: ["exports.map", "link-static-libstdc++.sh"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I/usr/include/PCSC"])],
            linkerSettings: [.unsafeFlags(moduleLinkFlags)]
        ),

        // The setuid-root helper for callers that run as the user (screen lockers).
        .executableTarget(
            name: "smartotp-chkotp",
            dependencies: ["SmartOTPSystem", "SmartOTPAuth", "TokenStore", "OTPCore", "POSIX", "CPOSIX"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I/usr/include/PCSC"])],
            linkerSettings: [.unsafeFlags(["-static-stdlib"])]
        ),

        // The virtual card's applet: a library so that tests drive it without a socket.
        .target(name: "VirtualCard", dependencies: ["OTPCore", "SmartCard"]),

        // Tools.
        .executableTarget(
            name: "smartotp",
            dependencies: [
                "SmartOTPSystem", "SmartOTPAuth", "TokenStore", "SmartCard", "PCSC", "POSIX", "OTPCore", "CQREncode",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I/usr/include/PCSC"])]
        ),
        .executableTarget(
            name: "smartotp-card",
            dependencies: [
                "VirtualCard",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "smartotp-bench",
            dependencies: ["OTPCore", "TokenStore", "SmartCard", "PCSC"],
            path: "Benchmarks/smartotp-bench",
            swiftSettings: [.unsafeFlags(["-Xcc", "-I/usr/include/PCSC"])]
        ),
        // A plain C program that runs a PAM stack from a private directory with
        // pam_start_confdir(): the harness of the PAM integration tests.
        .executableTarget(
            name: "pam-harness",
            path: "Tests/Harness/pam-harness",
            linkerSettings: [.linkedLibrary("pam")]
        ),

        // Unit tests mirror Sources/.
        // libcrypto only as an independent reference for the hash tests.
        .testTarget(name: "OTPCoreTests", dependencies: ["OTPCore", "CLibCrypto"], exclude: ["Vectors"]),
        .testTarget(name: "TokenStoreTests", dependencies: ["TokenStore", "OTPCore"]),
        .testTarget(name: "SmartCardTests", dependencies: ["SmartCard", "VirtualCard", "OTPCore"]),
        .testTarget(name: "SmartOTPAuthTests", dependencies: ["SmartOTPAuth", "SmartCard", "TokenStore", "OTPCore"]),
        .testTarget(
            name: "SmartOTPSystemTests",
            dependencies: ["SmartOTPSystem", "SmartOTPAuth", "SmartCard", "VirtualCard", "OTPCore"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I/usr/include/PCSC"])]
        ),
    ]
)
