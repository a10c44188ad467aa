/// Text handled as UTF-8 bytes: what the record, helper and config parsers need, without
/// grapheme breaking or Unicode case tables (both costly in the module, see README).
extension String {
    /// Byte-for-byte equality. What the module and the helper compare (user names, token
    /// ids, settings, protocol words) is compared as written: String's `==` is canonical
    /// equivalence, which normalises non-ASCII text and links Unicode's normalisation
    /// tables (26 KB, a twelfth of the module) into every program that uses it.
    /// `10-module.sh` checks the module holds no such table.
    @inline(__always)
    public func equals(_ other: String) -> Bool {
        // The lengths inline: most comparisons (a setting's name against a table's) end here.
        utf8.count == other.utf8.count && sameBytes(other)
    }

    @inline(never)
    func sameBytes(_ other: String) -> Bool {
        // Both are contiguous UTF-8 (native and small strings are): compared eight bytes a
        // step; a bridged or foreign string, byte by byte.
        let contiguous = utf8.withContiguousStorageIfAvailable { a in
            other.utf8.withContiguousStorageIfAvailable { b in ConstantTime.equals(UnsafeRawBufferPointer(a), UnsafeRawBufferPointer(b)) }
        }
        if case .some(.some(let same)) = contiguous { return same }
        return utf8.elementsEqual(other.utf8)
    }

    /// Without its first `n` bytes (an ASCII prefix already matched with `begins(with:)`):
    /// `dropFirst` on a String walks Characters, and brings grapheme breaking along.
    public func droppingBytes(_ n: Int) -> String {
        String(decoding: utf8.dropFirst(n), as: UTF8.self)
    }

    /// Without leading and trailing spaces, tabs and line ends, over the bytes.
    public var trimmingASCIISpaces: String {
        let bytes = utf8
        func blank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0A }
        var start = bytes.startIndex, end = bytes.endIndex
        while start != end && blank(bytes[start]) { start = bytes.index(after: start) }
        while end != start {
            let before = bytes.index(before: end)
            guard blank(bytes[before]) else { break }
            end = before
        }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }

    /// A–Z turned into a–z, every other byte left alone: enough for algorithm names, hex
    /// and device ids, and free of the Unicode case tables `lowercased()` pulls into the
    /// module.
    public var asciiLowercased: String {
        String(decoding: utf8.map { (0x41...0x5A).contains($0) ? $0 + 0x20 : $0 }, as: UTF8.self)
    }

    /// Splits at every `separator` byte, as `split` does but over UTF-8 bytes: no grapheme
    /// breaking, which makes parsing a record ten times cheaper and keeps "\r\n" two bytes.
    /// `omittingEmpty` drops empty pieces (`split`'s default).
    public func splitBytes(_ separator: UInt8, maxSplits: Int = Int.max, omittingEmpty: Bool = true) -> [String] {
        var out: [String] = []
        let bytes = utf8
        var start = bytes.startIndex
        var i = bytes.startIndex
        while i != bytes.endIndex {
            if bytes[i] == separator && out.count < maxSplits {
                if !(omittingEmpty && start == i) { out.append(String(decoding: bytes[start..<i], as: UTF8.self)) }
                start = bytes.index(after: i)
            }
            i = bytes.index(after: i)
        }
        if !(omittingEmpty && start == bytes.endIndex) { out.append(String(decoding: bytes[start..<bytes.endIndex], as: UTF8.self)) }
        return out
    }
}

extension Sequence where Element == String {
    /// Whether one element has `text`'s bytes (`String.equals`: no Unicode normalisation).
    public func containsBytes(of text: String) -> Bool { contains { $0.equals(text) } }
}

/// Text built as UTF-8 bytes in one reserved buffer: what a record is written as, twice a
/// login. String appends (and the integer `description`s) cost several times more in the
/// module, where every one of them runs the generic String machinery.
///
/// The buffer is zero-filled ahead and each piece is copied into place with one memmove:
/// appending to an Array copies a byte at a time in Embedded Swift.
public struct ByteWriter {
    /// The written bytes are `storage[0..<count]`; the rest is room.
    private var storage: [UInt8]
    public private(set) var count = 0

    public init(capacity: Int) { storage = [UInt8](repeating: 0, count: max(capacity, 32)) }

    /// The bytes written so far as a String (UTF-8, repaired if need be).
    public func string() -> String {
        storage.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[0..<count]), as: UTF8.self) }
    }

    public mutating func add(raw piece: UnsafeRawBufferPointer) {
        guard let source = piece.baseAddress, piece.count > 0 else { return }
        if count + piece.count > storage.count {
            storage.append(contentsOf: repeatElement(0, count: max(storage.count, piece.count)))
        }
        let at = count
        storage.withUnsafeMutableBytes { room in
            if let base = room.baseAddress { (base + at).copyMemory(from: source, byteCount: piece.count) }
        }
        count += piece.count
    }

    public mutating func add(_ text: StaticString) {
        text.withUTF8Buffer { add(raw: UnsafeRawBufferPointer($0)) }
    }

    /// A String's own UTF-8 bytes. Disfavoured so that a literal takes the StaticString
    /// overload: its bytes are copied straight from the binary, without a String's checks.
    @_disfavoredOverload
    public mutating func add(_ text: String) {
        var text = text
        text.withUTF8 { add(raw: UnsafeRawBufferPointer($0)) }
    }

    public mutating func add(byte: UInt8) {
        withUnsafeBytes(of: byte) { add(raw: $0) }
    }

    public mutating func add(bytes more: [UInt8]) { more.withUnsafeBytes { add(raw: $0) } }

    /// Decimal, as `String(n)` writes it.
    public mutating func add(_ n: Int64) {
        if n < 0 { add(byte: UInt8(ascii: "-")) }
        add(n.magnitude)
    }

    public mutating func add(_ n: Int) { add(Int64(n)) }

    public mutating func add(_ n: UInt64) {
        // The digits from the right, on the stack, then copied in once.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var i = digits.count
            var v = n
            repeat {
                i -= 1
                digits[i] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: v % 10)
                v /= 10
            } while v > 0 && i > 0
            add(raw: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: digits[i...])))
        }
    }

    /// Hands the bytes over, leaving the writer empty.
    public mutating func take() -> [UInt8] {
        storage.removeLast(storage.count - count)
        let out = storage
        storage = []
        count = 0
        return out
    }
}

/// Decimal integers read from bytes, as `Int64(String)` reads them (an optional sign, then
/// digits only), without making a String first.
///
/// These byte helpers are `@inlinable`: a server build (not Embedded Swift, which specializes
/// everything) would otherwise run them unspecialized across modules, through value witnesses
/// and runtime metadata (smartotpd's profile: a record's parse, on every verdict).
public enum ByteNumber {
    @inlinable
    public static func parse<T: FixedWidthInteger, C: Collection<UInt8>>(_ bytes: C, as _: T.Type = T.self) -> T? {
        var i = bytes.startIndex
        guard i != bytes.endIndex else { return nil }
        var negative = false
        if bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+") {
            negative = bytes[i] == UInt8(ascii: "-")
            i = bytes.index(after: i)
            guard i != bytes.endIndex else { return nil }
        }
        var value: T = 0
        while i != bytes.endIndex {
            let b = bytes[i]
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else { return nil }
            let digit = T(b - UInt8(ascii: "0"))
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = negative ? times10.subtractingReportingOverflow(digit) : times10.addingReportingOverflow(digit)
            guard !o1 && !o2 else { return nil }
            value = next
            i = bytes.index(after: i)
        }
        return value
    }
}

extension Collection<UInt8> {
    /// Whether these bytes spell `text` exactly.
    @inlinable
    public func spells(_ text: StaticString) -> Bool {
        count == text.utf8CodeUnitCount && text.withUTF8Buffer { elementsEqual($0) }
    }

    /// Whether these bytes begin with `text`. Used instead of `String.hasPrefix` in what the
    /// module links: hasPrefix's fast path is libc's bcmp, one more symbol for the dynamic
    /// linker to look up each time a host loads the module.
    @inlinable
    public func begins(with text: StaticString) -> Bool {
        text.withUTF8Buffer { prefix in
            var i = startIndex
            for b in prefix {
                guard i != endIndex, self[i] == b else { return false }
                i = index(after: i)
            }
            return true
        }
    }
}

/// A message: a string literal with interpolated values, built through a few shared,
/// non-generic functions. The module writes `msg("… \(value) …")` rather than plain
/// interpolation: in Embedded Swift plain interpolation is expanded in place at every use
/// (about 800 bytes for a two-piece message), and the module's size is a target.
///
/// The pieces are gathered as UTF-8 bytes and made a String once: literal pieces arrive
/// as StaticStrings (copied, not appended through the String machinery).
public struct Message: ExpressibleByStringInterpolation {
    public let text: String

    // Not inlined: one copy of each, however many messages (size is a target).
    @inline(never) public init(stringLiteral value: StaticString) { text = value.description }
    @inline(never) public init(stringInterpolation: Interpolation) { text = stringInterpolation.bytes.string() }

    public struct Interpolation: StringInterpolationProtocol {
        public typealias StringLiteralType = StaticString
        var bytes: ByteWriter
        @inline(never) public init(literalCapacity: Int, interpolationCount: Int) {
            bytes = ByteWriter(capacity: literalCapacity + 16 * interpolationCount)
        }
        @inline(never) public mutating func appendLiteral(_ literal: StaticString) { bytes.add(literal) }
        @inline(never) public mutating func appendInterpolation(_ value: String) { bytes.add(value) }
        public mutating func appendInterpolation(_ value: Substring) { appendInterpolation(String(value)) }
        public mutating func appendInterpolation(_ value: Int) { appendInterpolation(Int64(value)) }
        public mutating func appendInterpolation(_ value: Int32) { appendInterpolation(Int64(value)) }
        @inline(never) public mutating func appendInterpolation(_ value: Int64) { bytes.add(value) }
        public mutating func appendInterpolation(_ value: UInt32) { appendInterpolation(UInt64(value)) }
        @inline(never) public mutating func appendInterpolation(_ value: UInt64) { bytes.add(value) }
        public mutating func appendInterpolation<T: CustomStringConvertible>(_ value: T) { appendInterpolation(value.description) }
    }
}

/// The text of a `Message` (see there for why).
@inline(never)
public func msg(_ message: Message) -> String { message.text }
