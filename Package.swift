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

/// Two configurations from one manifest, switched by SMARTOTP_EMBEDDED (a normal test
/// target cannot import an Embedded module):
/// - normal: the unit tests, the CLIs, the virtual card, the benchmarks;
/// - SMARTOTP_EMBEDDED=1 (`scripts/build-embedded.sh`, its own --scratch-path): the PAM
///   module and the setuid helper in Embedded Swift, with no runtime and no reflection,
///   nothing read from the host's environment and no signal handlers: what sshd and sudo
///   load. Only the targets they link are in that package.
let embedded = Context.environment["SMARTOTP_EMBEDDED"] == "1"
/// `SMARTOTP_NO_FLEET=1` leaves out the fleet's network side (smartotpd, smartotp-fleet,
/// the load client) and SwiftNIO, swift-nio-ssl, swift-crypto and libpq with it:
/// the single host's build (./install.sh without --fleet: the module, the helper, the CLI,
/// the virtual card; minutes instead of a quarter of an hour), and the sanitizer runs of
/// the unit tests (Tests/sanitize.sh), where those packages are not under test. The CLI
/// reaches the fleet through smartotp-fleet, so it links no TLS library either way.
let withFleet = !embedded && Context.environment["SMARTOTP_NO_FLEET"] != "1"
/// Where the setuid helper and the fleet client are installed, chosen when the module is
/// built (their paths are compiled in as defaults, see Sources/CPOSIX): /usr/local/sbin
/// for ./install.sh, /usr/sbin for the Debian packages (debian/rules).
/// Unset: the default written once in Sources/CPOSIX/cposix.c (/usr/local/sbin).
let sbinDirectory = Context.environment["SMARTOTP_SBINDIR"]
precondition(sbinDirectory.map { $0.hasPrefix("/") && !$0.contains("\"") && !$0.contains("\\") } ?? true, "SMARTOTP_SBINDIR must be an absolute path without quotes")
/// libswiftUnicodeDataTables.a (String comparison, hashing and counting need it).
let embeddedLibraries = Context.environment["SMARTOTP_EMBEDDED_LIBDIR"] ?? "/opt/swift/usr/lib/swift/embedded/x86_64-unknown-linux-gnu"

/// pcsclite's headers include each other as <pcsclite.h>: every Swift target that imports
/// a module built over CPCSCOnUse, directly or not, needs their folder.
let pcscHeaders: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-I/usr/include/PCSC"])]
/// The Embedded mode and its code generation: only in the Embedded build, where every
/// target is one the module or the helper links.
let embeddedMode: [SwiftSetting] = embedded
    ? [.enableExperimentalFeature("Embedded"), .unsafeFlags(["-wmo", "-Osize", "-Xfrontend", "-function-sections"])]
    : []
/// What the targets the module and the helper link are built with, in either
/// configuration; the normal-only targets (CLIs, smartotpd, tests) take `pcscHeaders` alone.
let moduleSwiftSettings: [SwiftSetting] = embeddedMode + pcscHeaders

/// The Embedded link: lld, for identical-code folding (`--icf=all`: many of the module's
/// specialisations are byte-identical) and DT_RELR (`pack-relative-relocs`: relative
/// relocations packed; sizes in Benchmarks/RESULTS.md), the Unicode tables String comparison needs, `-z defs` so that a missing
/// library fails at link time and not at login, function-level garbage collection, and for
/// the module libpam (named here: a module map's `link` line is ignored) and the export
/// list: only the `pam_sm_*` entry points are visible. libpcsclite and libcrypt are not
/// linked: CPCSCOnUse and CCryptOnUse open them when a tap or a password first needs them.
let embeddedLinkFlags: [String] = [
    "-use-ld=lld", "-Xlinker", "--icf=all", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
    "-L\(embeddedLibraries)", "-lswiftUnicodeDataTables",
    "-Xlinker", "-z", "-Xlinker", "defs", "-Xlinker", "-z", "-Xlinker", "now", "-Xlinker", "--gc-sections",
]
/// The module is linked without the C start files (crti, crtbeginS, crtendS): it has no
/// C++ static destructors and no transactional memory, so all they would bring is five
/// symbols for the dynamic linker to look up at every load (`__cxa_finalize` twice, and
/// the weak `__gmon_start__` and `_ITM_*`, searched through every library and not found). Its destructors (CPCSCOnUse's and CCryptOnUse's) are in
/// `.fini_array`, which the dynamic linker runs itself.
let moduleLinkFlags = embeddedLinkFlags + [
    "-lpam", "-Xclang-linker", "-nostartfiles",
    "-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/PamSmartOTP/exports.map",
]

/// The C libraries and the targets the module and the helper link: in both configurations.
let moduleTargets: [Target] = [
    .systemLibrary(name: "CPAM", path: "Sources/CPAM", providers: [.apt(["libpam0g-dev"])]),
    // libpcsclite and libcrypt, each opened with dlopen when first needed (their headers
    // from libpcsclite-dev and libcrypt-dev; pcsclite's include each other as <pcsclite.h>).
    .target(name: "CPCSCOnUse", cSettings: [.unsafeFlags(["-I/usr/include/PCSC", "-gdwarf-4"])]),
    .target(name: "CCryptOnUse", cSettings: [.unsafeFlags(["-gdwarf-4"])]),
    // The one C target for what Swift cannot call (errno, variadic open/fcntl), and the
    // POSIX layer over it: typed descriptors, one EINTR loop, processes, users, clocks.
    // DWARF 4 for every C target: valgrind 3.19 (Debian 12), used by the benchmarks, cannot
    // read clang's DWARF 5.
    .target(name: "CPOSIX", cSettings: [.unsafeFlags(["-gdwarf-4"])] + (sbinDirectory.map { [.define("SMARTOTP_SBINDIR", to: "\"\($0)\"")] } ?? [])),
    .target(name: "POSIX", dependencies: ["CPOSIX", "OTPCore"], swiftSettings: moduleSwiftSettings),
    // Pure: its only libc calls are explicit_bzero and arc4random_buf.
    .target(name: "OTPCore", dependencies: ["CPOSIX"], swiftSettings: moduleSwiftSettings),
    // Transport → ISO 7816 → YKOATH; knows nothing of PC/SC.
    .target(name: "SmartCard", dependencies: ["OTPCore"], swiftSettings: moduleSwiftSettings),
    // The PC/SC leaf.
    .target(name: "PCSC", dependencies: ["SmartCard", "OTPCore", "CPCSCOnUse"], swiftSettings: moduleSwiftSettings),
    .target(name: "TokenStore", dependencies: ["OTPCore", "POSIX", "CCryptOnUse"], swiftSettings: moduleSwiftSettings),
    // The verifier: the verdict procedure (count first, check, clear), the policy and its
    // settings, tap challenges bound to the host that asked, and the typed request/reply
    // with its codec, frame and size limits. Pure: the module, the helper, smartotp-fleet
    // and smartotpd all decide and speak through it.
    .target(name: "Verifier", dependencies: ["OTPCore", "TokenStore"], swiftSettings: moduleSwiftSettings),
    // The login flow: tap → code → simple password, its prompts and its outcome.
    .target(name: "SmartOTPAuth", dependencies: ["OTPCore", "SmartCard", "TokenStore", "Verifier"], swiftSettings: moduleSwiftSettings),
    .target(
        name: "SmartOTPSystem",
        dependencies: ["SmartOTPAuth", "Verifier", "SmartCard", "PCSC", "TokenStore", "OTPCore", "POSIX"],
        swiftSettings: moduleSwiftSettings
    ),
]

/// The module and the helper themselves. Built in both configurations, so that `swift
/// build` and editors type-check them; linked as the installed `.so` and setuid program
/// (with the Embedded link) only in the Embedded build, which is what is installed and
/// tested. The normal build links no product of them.
let pamTargets: [Target] = [
    // The one C function the module needs: a fixed-arity pam_syslog.
    // DWARF 4: valgrind 3.19 (Debian 12), used by the benchmarks, cannot read clang's DWARF 5.
    .target(name: "PamShim", dependencies: ["CPAM"], cSettings: [.unsafeFlags(["-gdwarf-4"])]),
    .target(
        name: "PamSmartOTP",
        dependencies: ["SmartOTPSystem", "SmartOTPAuth", "Verifier", "TokenStore", "OTPCore", "POSIX", "CPOSIX", "CPAM", "PamShim"],
        exclude: ["exports.map"],
        swiftSettings: moduleSwiftSettings,
        linkerSettings: embedded ? [.unsafeFlags(moduleLinkFlags)] : []
    ),
    // The setuid-root helper for callers that run as the user (screen lockers), and its
    // command line from the C side.
    .target(name: "CHelper", cSettings: [.unsafeFlags(["-gdwarf-4"])]),
    .executableTarget(
        name: "smartotp-chkotp",
        dependencies: ["SmartOTPSystem", "SmartOTPAuth", "Verifier", "TokenStore", "OTPCore", "POSIX", "CPOSIX", "CHelper"],
        swiftSettings: moduleSwiftSettings,
        linkerSettings: embedded ? [.unsafeFlags(embeddedLinkFlags)] : []
    ),
]

/// Tools, tests and benchmarks: normal Swift (Foundation and swift-argument-parser are fine).
let normalTargets: [Target] = [
    // libcrypto is used by the tests only, as an independent reference for the hashes.
    .systemLibrary(name: "CLibCrypto", path: "Sources/CLibCrypto", providers: [.apt(["libssl-dev"])]),
    .systemLibrary(name: "CQREncode", path: "Sources/CQREncode", providers: [.apt(["libqrencode-dev"])]),
    // libpq: smartotpd's PostgreSQL client (TLS, SCRAM, timeouts are PostgreSQL's own).
    .systemLibrary(name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
    // glibc's malloc.h (mallopt, mallinfo2): smartotpd's malloc settings and /metrics.
    .systemLibrary(name: "CMalloc", path: "Sources/CMalloc"),
    // What only the administrator's tools use (the CLI): importers of other modules'
    // files, merging them into records, recovery-code generation. Normal Swift: never
    // linked into the module or the helper.
    .target(name: "SmartOTPAdmin", dependencies: ["Verifier", "TokenStore", "OTPCore", "POSIX"]),
    // The virtual card's applet: a library so that tests drive it without a socket.
    .target(name: "VirtualCard", dependencies: ["OTPCore", "SmartCard"]),
    // The fleet: its wire (routes, addresses, roles: what hosts, administrators and the
    // verifier share), the HTTPS client hosts and admins use, the client process the module
    // runs, and the verifier service itself.
    .target(name: "SmartOTPFleet", dependencies: ["Verifier", "TokenStore", "OTPCore"], swiftSettings: pcscHeaders),
    // smartotpd's keys: secrets sealed with AES-256-GCM, the audit chain's macs.
    .target(name: "SmartOTPVault", dependencies: ["TokenStore", "OTPCore", .product(name: "Crypto", package: "swift-crypto")]),
    // smartotpd as a service library: its middleware (identity and role, revocation,
    // routing, budgets, hashing slots), its handlers, its configuration, and the Ledger port
    // every verdict, offline report, admin change and revocation goes through, with the
    // in-memory ledger its tests run on. No NIO, no libpq: tested in process.
    .target(
        name: "SmartOTPService",
        dependencies: [
            "SmartOTPFleet", "SmartOTPVault", "SmartOTPAdmin", "Verifier", "TokenStore", "OTPCore", "POSIX",
            .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "X509", package: "swift-certificates"), .product(name: "SwiftASN1", package: "swift-asn1"),
        ]
    ),
    // The ledger in PostgreSQL, through libpq: the pool, the schema, the commit.
    .target(
        name: "SmartOTPPostgres",
        dependencies: [
            "SmartOTPService", "SmartOTPVault", "Verifier", "TokenStore", "OTPCore", "CLibPQ",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]
    ),
    .target(
        name: "FleetNet",
        dependencies: [
            "SmartOTPFleet", "TokenStore", "OTPCore", "POSIX",
            // For its BoringSSL (CNIOBoringSSL, which has no product of its own): the client
            // is blocking libssl calls, no event loop (HTTPSClient.swift says why).
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ],
        swiftSettings: pcscHeaders
    ),
    // The fleet client's decisions: asking the verifiers, and the host's offline stock
    // (offline=tap) decided through the one verdict procedure. What the module no longer
    // carries: it only sends frames to smartotp-fleet.
    .target(name: "FleetClient", dependencies: ["SmartOTPFleet", "Verifier", "TokenStore", "OTPCore", "POSIX"]),
    .executableTarget(
        name: "smartotp-fleet",
        dependencies: ["FleetClient", "FleetNet", "SmartOTPFleet", "SmartOTPAuth", "SmartOTPSystem", "Verifier", "TokenStore", "OTPCore", "POSIX"],
        swiftSettings: pcscHeaders,
        // Started twice a fleet login: the Swift libraries linked in, not loaded (and no
        // toolchain needed on the host).
        linkerSettings: [.unsafeFlags(["-static-stdlib", "-Xlinker", "--no-export-dynamic"])]
    ),
    .executableTarget(
        name: "smartotpd",
        dependencies: [
            "SmartOTPService", "SmartOTPPostgres", "SmartOTPFleet", "SmartOTPVault", "Verifier", "OTPCore", "POSIX", "CMalloc",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        ],
        swiftSettings: pcscHeaders
    ),
    .executableTarget(
        name: "smartotp",
        dependencies: [
            "SmartOTPSystem", "SmartOTPAuth", "Verifier", "SmartOTPAdmin", "TokenStore", "SmartCard", "PCSC", "POSIX", "OTPCore", "CQREncode",
            "SmartOTPFleet", "CardEmulator",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ],
        swiftSettings: pcscHeaders
    ),
    // The virtual card's command, shared by smartotp-card and smartotp (which runs it when
    // called as smartotp-card: the package links the one name to the other).
    .target(name: "CardEmulator", dependencies: ["VirtualCard", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
    .executableTarget(name: "smartotp-card", dependencies: ["CardEmulator"]),
    .executableTarget(
        name: "smartotp-bench",
        dependencies: ["OTPCore", "TokenStore", "SmartCard", "PCSC", "POSIX"],
        path: "Benchmarks/smartotp-bench",
        swiftSettings: pcscHeaders
    ),
    // The load client of Benchmarks/fleet-bench.sh.
    .executableTarget(
        name: "fleet-load",
        dependencies: ["FleetNet", "SmartOTPFleet", "SmartOTPAuth", "Verifier", "TokenStore", "OTPCore"],
        path: "Benchmarks/fleet-load",
        // A benchmark's threads and blocking connections, in a script: Swift 5 checking.
        swiftSettings: pcscHeaders + [.swiftLanguageMode(.v5)]
    ),
    // A plain C program that runs a PAM stack from a private directory with
    // pam_start_confdir(): the harness of the PAM integration tests.
    .executableTarget(name: "pam-harness", path: "Tests/Harness/pam-harness", linkerSettings: [.linkedLibrary("pam")]),
    // Unit tests mirror Sources/.
    .testTarget(name: "OTPCoreTests", dependencies: ["OTPCore", "CLibCrypto"], exclude: ["Vectors"]),
    .testTarget(name: "TokenStoreTests", dependencies: ["TokenStore", "OTPCore"]),
    .testTarget(name: "SmartCardTests", dependencies: ["SmartCard", "VirtualCard", "OTPCore"]),
    .testTarget(name: "FleetClientTests", dependencies: ["FleetClient", "SmartOTPFleet", "Verifier", "TokenStore", "OTPCore", "POSIX"]),
    .testTarget(name: "FleetNetTests", dependencies: ["FleetNet", "SmartOTPFleet"]),
    .testTarget(name: "SmartOTPAdminTests", dependencies: ["SmartOTPAdmin", "Verifier", "TokenStore", "OTPCore"]),
    .testTarget(name: "POSIXTests", dependencies: ["POSIX", "CPOSIX"]),
    .testTarget(name: "VerifierTests", dependencies: ["Verifier", "TokenStore", "OTPCore"]),
    .testTarget(name: "SmartOTPAuthTests", dependencies: ["SmartOTPAuth", "Verifier", "SmartOTPAdmin", "SmartCard", "TokenStore", "OTPCore"]),
    .testTarget(name: "SmartOTPFleetTests", dependencies: ["SmartOTPFleet", "SmartOTPVault", "SmartOTPAdmin", "Verifier", "TokenStore", "OTPCore"], swiftSettings: pcscHeaders),
    .testTarget(
        name: "SmartOTPServiceTests",
        dependencies: [
            "SmartOTPService", "SmartOTPFleet", "SmartOTPVault", "SmartOTPAdmin", "Verifier", "TokenStore", "OTPCore",
            .product(name: "X509", package: "swift-certificates"), .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Crypto", package: "swift-crypto"), .product(name: "Logging", package: "swift-log"),
        ]
    ),
    .testTarget(name: "SmartOTPPostgresTests", dependencies: ["SmartOTPPostgres", "SmartOTPService", "SmartOTPVault", "SmartOTPFleet", "Verifier", "TokenStore", "OTPCore", "POSIX",
                                                               .product(name: "Logging", package: "swift-log")]),
    .testTarget(
        name: "SmartOTPSystemTests",
        dependencies: ["SmartOTPSystem", "SmartOTPAuth", "Verifier", "SmartCard", "VirtualCard", "OTPCore", "POSIX", "CPOSIX", "TokenStore"],
        swiftSettings: pcscHeaders
    ),
]

/// The targets that need SwiftNIO (left out with SMARTOTP_NO_FLEET=1).
let fleetNetworkTargets: Set = ["FleetNet", "CLibPQ", "smartotp-fleet", "smartotpd", "fleet-load", "FleetNetTests", "SmartOTPVault", "SmartOTPFleetTests",
                                "SmartOTPService", "SmartOTPPostgres", "SmartOTPServiceTests", "SmartOTPPostgresTests", "FleetClient", "FleetClientTests"]

let package = Package(
    name: "smartotp",
    products: embedded
        ? [
            .library(name: "pam_smartotp", type: .dynamic, targets: ["PamSmartOTP"]),
            .executable(name: "smartotp-chkotp", targets: ["smartotp-chkotp"]),
        ]
        : [
            .executable(name: "smartotp-card", targets: ["smartotp-card"]),
            .executable(name: "smartotp", targets: ["smartotp"]),
        ] + (withFleet ? [
            .executable(name: "smartotpd", targets: ["smartotpd"]),
            .executable(name: "smartotp-fleet", targets: ["smartotp-fleet"]),
        ] : []),
    // The Embedded build (module and helper) uses none of these.
    dependencies: embedded ? [] : [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ] + (!withFleet ? [] : [
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.29.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.10.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    ]),
    targets: moduleTargets + pamTargets + (embedded ? [] : normalTargets.filter { withFleet || !fleetNetworkTargets.contains($0.name) })
)
