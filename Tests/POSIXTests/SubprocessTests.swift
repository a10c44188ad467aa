import CPOSIX
import POSIX
import Testing

/// How the module runs the setuid helper: `Subprocess.run`, from the host's process.
@Suite("Subprocess: running the helper")
struct SubprocessTests {
    /// Runs `body` with SIGPIPE at its default action (death), whatever the test runner set.
    func withDefaultSIGPIPE<R>(_ body: () throws -> R) rethrows -> R {
        var previous = sigaction()
        _ = cposix_set_signal(SIGPIPE, 0, &previous)
        defer { _ = cposix_restore_signal(SIGPIPE, &previous) }
        return try body()
    }

    @Test("a program that exits without reading its request: an error at most, never SIGPIPE in the host")
    func exitsWithoutReading() throws {
        // 4 MiB: more than a socket holds, so the request is still being written when the
        // program is gone. Written to a pipe, that killed the host (a screen locker).
        let result = try withDefaultSIGPIPE {
            try Subprocess.run("/bin/true", [], input: [UInt8](repeating: 0x41, count: 4 << 20), outputLimit: 64)
        }
        #expect(result.exitCode == 0)
        #expect(result.output.isEmpty)
    }

    @Test("the request on standard input, the answer from standard output, the exit code")
    func roundTrip() throws {
        let result = try Subprocess.run("/bin/bash", ["-c", "cat; exit 3"], input: Array("request\n".utf8), outputLimit: 64)
        #expect(result.exitCode == 3)
        #expect(result.output == Array("request\n".utf8))
    }

    @Test("arguments arrive whole as argv; the environment is empty")
    func arguments() throws {
        let result = try Subprocess.run("/bin/bash", ["-c", "printf '%s|%s|%s' \"$0\" \"$1\" \"${HOME-none}\"", "one two", ""],
                                        input: [], outputLimit: 64)
        #expect(result.output == Array("one two||none".utf8))
    }

    @Test("the program's standard error is /dev/null: nothing it says reaches the host's terminal")
    func standardErrorGoesNowhere() throws {
        let result = try Subprocess.run("/bin/bash", ["-c", "echo secret-ish >&2; readlink /proc/self/fd/2"], input: [], outputLimit: 64)
        #expect(result.output == Array("/dev/null\n".utf8))
    }

    @Test("an answer longer than the limit is no answer")
    func outputLimit() throws {
        let long = try Subprocess.run("/bin/bash", ["-c", "printf 0123456789"], input: [], outputLimit: 4)
        #expect(long.exitCode == 0)
        #expect(long.output.isEmpty)
        let short = try Subprocess.run("/bin/bash", ["-c", "printf 0123"], input: [], outputLimit: 4)
        #expect(short.output == Array("0123".utf8))
    }

    @Test("a program that is not there: a SystemCallError naming posix_spawn")
    func missingProgram() {
        #expect(throws: SystemCallError.self) {
            try Subprocess.run("/nonexistent/smartotp-chkotp", [], input: [], outputLimit: 64)
        }
    }
}
