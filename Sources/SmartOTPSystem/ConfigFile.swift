import POSIX
import SmartOTPAuth

extension ModuleConfig {
    /// Root's policy file for the helper (`smartotp.conf(5)`).
    public static let policyFile = "/etc/smartotp/smartotp.conf"

    /// The settings of the module and of the helper, one way: the words of `file` (when
    /// given and present), then `arguments` over them. The file is opened without
    /// following a symbolic link and checked on the open descriptor: a regular file owned
    /// by root, not writable by group or others, under 64 KiB. A missing file is no error
    /// (the defaults apply); any other problem is.
    public static func load(arguments: [String], file: String?) throws(ConfigError) -> Parsed {
        var fromFile: [String] = []
        if let file {
            let fd: FileDescriptor?
            do throws(SystemCallError) { fd = try FileDescriptor.openIfExists(file, .readOnly) } catch {
                throw .unreadableFile(path: file, reason: error.description)
            }
            if let fd {
                defer { fd.close() }
                let status: FileStatus
                let contents: [UInt8]?
                do throws(SystemCallError) {
                    status = try fd.status(file)
                    contents = status.isRegular ? try fd.readAll(file, limit: 65535) : nil
                } catch {
                    throw .unreadableFile(path: file, reason: error.description)
                }
                guard status.isRegular, status.owner == 0, status.permissions & 0o022 == 0 else {
                    throw .unreadableFile(path: file, reason: "it must be a regular file owned by root, not writable by group or others")
                }
                guard let contents else { throw .unreadableFile(path: file, reason: "larger than 64 KiB") }
                let text = String(decoding: contents, as: UTF8.self)
                fromFile = words(ofFile: text)
            }
        }
        let base = try parse(fromFile).config
        return try parse(arguments, over: base)
    }
}
