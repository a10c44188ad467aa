#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: its ICU data would be most of the package
#else
import Foundation
#endif
import Glibc

/// Reads /etc/pam.d the way Linux-PAM does for what `check` needs: which module lines a
/// service's stack really runs once `@include FILE` and `TYPE include|substack FILE` are
/// followed (the way `--enable` adds smartotp is an `@include smartotp-auth`).
struct PamStacks {
    let directory: String

    /// One module line of a resolved stack, with the file it came from.
    struct Line: Equatable {
        var file: String
        var type: String
        var module: String
    }

    func text(_ name: String) -> String? {
        guard !name.contains("/") || name.hasPrefix("/") else { return nil }
        let path = name.hasPrefix("/") ? name : "\(directory)/\(name)"
        return try? String(contentsOfFile: path, encoding: .utf8)
    }

    /// The module lines of `service`, includes followed (at most 16 deep: PAM's own limit
    /// is lower, and a loop must end). `only`: keep lines of this type (auth, account …).
    func resolve(_ service: String, only type: String? = nil, depth: Int = 0) -> [Line] {
        guard depth < 16, let text = text(service) else { return [] }
        var out: [Line] = []
        for raw in text.split(separator: "\n") {
            let words = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first?
                .split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) ?? []
            guard let first = words.first else { continue }
            if first == "@include", words.count > 1 {
                out += resolve(words[1], only: type, depth: depth + 1)
                continue
            }
            let lineType = first.hasPrefix("-") ? String(first.dropFirst()) : first
            guard words.count > 2, type == nil || lineType == type else { continue }
            // The control is one word, or a [bracketed list] that may hold spaces.
            var i = 1
            if words[1].hasPrefix("[") { while i < words.count && !words[i].hasSuffix("]") { i += 1 } }
            let control = words[1]
            guard i + 1 < words.count else { continue }
            let module = words[i + 1]
            if control == "include" || control == "substack" {
                out += resolve(module, only: lineType, depth: depth + 1)
            } else {
                out.append(Line(file: service, type: lineType, module: module))
            }
        }
        return out
    }

    static func isSmartOTP(_ module: String) -> Bool { module.hasSuffix("pam_smartotp.so") }

    /// The services (files of the directory) whose resolved stack runs pam_smartotp, and
    /// how many of its auth lines each runs.
    func servicesUsingSmartOTP() -> [(service: String, authLines: Int, viaInclude: Bool)] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        return names.compactMap { name in
            let lines = resolve(name).filter { Self.isSmartOTP($0.module) }
            guard !lines.isEmpty else { return nil }
            return (name, lines.filter { $0.type == "auth" }.count, lines.contains { $0.file != name })
        }
    }
}
