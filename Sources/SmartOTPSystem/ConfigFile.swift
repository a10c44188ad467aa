import POSIX
import SmartOTPAuth
import Verifier

extension ModuleConfig {
    /// The settings every caller uses, one way: the words of the policy file (`conf=` from
    /// `arguments`, else `file`), then `arguments` over them.
    ///
    /// The file is opened without following a symbolic link and checked on the open
    /// descriptor: a regular file owned by root, not writable by group or others, under
    /// 64 KiB, as sshd and pam-u2f check theirs. A missing file is no error (the defaults
    /// apply); any other problem is, and the caller refuses to authenticate.
    public static func load(arguments: [Argument], file: String = defaultFile) throws(ConfigError) -> Parsed {
        let path = try self.file(named: arguments, default: file)
        let contents = try read(path)
        return try parse(file: path, words: contents.withUnsafeBufferPointer { Setting.words(of: $0) }, arguments: arguments)
    }

    /// The bytes of the policy file at `path`, none when there is none.
    static func read(_ path: String) throws(ConfigError) -> [UInt8] {
        let fd: FileDescriptor?
        do throws(SystemCallError) { fd = try FileDescriptor.openIfExists(path, .readOnly) } catch {
            throw .unreadableFile(path: path, reason: error.description)
        }
        guard let fd else { return [] }
        defer { fd.close() }
        let status: FileStatus
        let contents: [UInt8]?
        do throws(SystemCallError) {
            status = try fd.status(path)
            contents = status.isRegular ? try fd.readAll(path, limit: 65535) : nil
        } catch {
            throw .unreadableFile(path: path, reason: error.description)
        }
        guard status.isRegular, status.owner == 0, status.permissions & 0o022 == 0 else {
            throw .unreadableFile(path: path, reason: "it must be a regular file owned by root, not writable by group or others")
        }
        guard let contents else { throw .unreadableFile(path: path, reason: "larger than 64 KiB") }
        return contents
    }
}
