/// Text handled as UTF-8 bytes: what the record, helper and config parsers need, without
/// grapheme breaking or Unicode case tables (both costly in the module, see README).
extension String {
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
