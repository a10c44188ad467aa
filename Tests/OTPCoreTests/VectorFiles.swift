import Foundation

/// Reads a whitespace-separated vector file next to this source, skipping `#` lines.
func vectorRows(_ name: String, file: StaticString = #filePath) throws -> [[String]] {
    let dir = URL(fileURLWithPath: "\(file)").deletingLastPathComponent()
    let text = try String(contentsOf: dir.appendingPathComponent("Vectors/\(name)"), encoding: .utf8)
    return text.split(separator: "\n")
        .map { $0.trimmingCharacters(in: .whitespaces) }
        .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        .map { $0.split(separator: " ").map(String.init) }
}

/// Runs a program and returns its standard output, trimmed; nil if it is not installed or fails.
func run(_ path: String, _ args: [String]) -> String? {
    guard FileManager.default.isExecutableFile(atPath: path) else { return nil }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return nil }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { return nil }
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}
