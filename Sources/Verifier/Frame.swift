import OTPCore
import TokenStore

/// The size limits of the session frames and the helper's input and answers: what the
/// module says to the setuid helper and to smartotp-fleet. (An HTTPS body between
/// smartotp-fleet and smartotpd is bounded by `FleetAPI.maxBody` in SmartOTPFleet, which
/// the module does not link; a card's answers by PCSC's and SmartCard's own limits.)
public enum WireLimits {
    /// A request's argument lines (a code, a password, a tap's hex): the helper's standard
    /// input, and a session frame after its request line.
    public static let request = 8192
    /// A session request frame: the line `USER OPERATION\n` and the argument lines.
    public static let requestFrame = request + 128
    /// An answer. A summary lists a user's cards, so it is bounded by a record's size.
    public static let answer = RecordFormat.maxSize
}

/// Why a frame or a request line cannot be read: the peer is not speaking the protocol.
public struct FrameError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

/// A session frame between the module and `smartotp-fleet --session`: `LENGTH\n` and then
/// LENGTH bytes, both ways. A request frame's payload is `USER OPERATION\n` and the
/// operation's argument lines; an answer frame's is the answer.
public enum Frame {
    /// `LENGTH\n` + `payload`. Holds what the payload holds: the caller wipes both.
    public static func encode(_ payload: [UInt8]) -> [UInt8] {
        var out = ByteWriter(capacity: payload.count + 8)
        out.add(Int64(payload.count))
        out.add(byte: UInt8(ascii: "\n"))
        payload.withUnsafeBytes { out.add(raw: $0) }
        return out.take()
    }

    /// Reads a frame's `LENGTH\n` one byte at a time.
    public struct Header: Sendable {
        var length = 0
        var digits = 0
        let limit: Int

        /// A header for frames of at most `limit` bytes.
        public init(limit: Int) { self.limit = limit }

        /// Whether no byte has been fed yet (end-of-file here is a clean end of session).
        public var isEmpty: Bool { digits == 0 }

        /// Takes the next byte: nil until the newline, then the length. Throws on
        /// anything but digits, on a bare newline and past `limit`.
        public mutating func feed(_ byte: UInt8) throws(FrameError) -> Int? {
            if byte == UInt8(ascii: "\n") {
                guard digits > 0 else { throw FrameError("a frame without a length") }
                return length
            }
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"), digits < 7 else { throw FrameError("a bad frame length") }
            length = length * 10 + Int(byte - UInt8(ascii: "0"))
            digits += 1
            guard length <= limit else { throw FrameError(msg("a frame longer than \(limit) bytes")) }
            return nil
        }
    }

    /// The payload of a request frame: `USER OPERATION\n` and the request's argument
    /// lines. Holds the code or password: the caller wipes it.
    public static func requestPayload(_ request: HelperProtocol.Request, for user: UserName) -> [UInt8] {
        let input = request.input
        var out = ByteWriter(capacity: 64 + input.utf8.count)
        out.add(user.value)
        out.add(byte: UInt8(ascii: " "))
        out.add(request.operation.rawValue)
        out.add(byte: UInt8(ascii: "\n"))
        out.add(input)
        return out.take()
    }

    /// Splits a request frame's payload into its user, its operation and the argument
    /// bytes after the first line (the caller wipes `payload` and the arguments).
    public static func parseRequest(_ payload: [UInt8]) throws(FrameError) -> (user: UserName, operation: HelperProtocol.Operation, arguments: [UInt8]) {
        let newline = payload.firstIndex(of: UInt8(ascii: "\n")) ?? payload.count
        let words = String(decoding: payload[..<newline], as: UTF8.self).splitBytes(UInt8(ascii: " "))
        guard words.count == 2, let user = try? UserName(words[0]), let operation = HelperProtocol.Operation.named(words[1]) else {
            throw FrameError("a bad request line (USER OPERATION)")
        }
        return (user, operation, Array(payload[min(newline + 1, payload.count)...]))
    }
}
