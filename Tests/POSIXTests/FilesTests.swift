import Foundation
import POSIX
import Testing

/// `FileDescriptor.readAll`: what every record and the policy file are read with.
@Suite("Files: readAll")
struct FilesTests {
    func withFile<R>(_ bytes: [UInt8], _ body: (FileDescriptor, String) throws -> R) throws -> R {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smartotp-readall-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        let w = try FileDescriptor.open(path, [.writeOnly, .create, .exclusive])
        do { try w.writeAll(bytes, path) } catch { w.close(); throw error }
        w.close()
        defer { FileSystem.unlink(path) }
        let r = try FileDescriptor.open(path, .readOnly)
        defer { r.close() }
        return try body(r, path)
    }

    @Test func sizesAroundTheLimit() throws {
        let limit = 5000
        for size in [0, 1, 4095, 4096, 4097, limit - 1, limit] {
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            #expect(try withFile(bytes) { fd, path in try fd.readAll(path, limit: limit) } == bytes, "\(size) bytes")
        }
        #expect(try withFile([UInt8](repeating: 1, count: limit + 1)) { fd, path in try fd.readAll(path, limit: limit) } == nil,
                "one byte over the limit is no answer")
    }

    @Test func aFileLargerThanFstatSaidIsReadWhole() throws {
        // /proc files say 0 bytes and hold more: the buffer grows.
        let fd = try FileDescriptor.open("/proc/self/status", .readOnly)
        defer { fd.close() }
        let bytes = try #require(try fd.readAll("/proc/self/status", limit: 1 << 16))
        #expect(bytes.count > 200)
        #expect(String(decoding: bytes, as: UTF8.self).hasPrefix("Name:"))
        #expect(bytes.last == UInt8(ascii: "\n"))
    }
}
