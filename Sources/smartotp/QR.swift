import CQREncode

/// Renders text as a QR code for a terminal, with libqrencode: two modules per character
/// cell (upper and lower half blocks), dark on light, with the 4-module quiet zone
/// scanners need.
enum TerminalQR {
    static func render(_ text: String) -> String? {
        guard let code = QRcode_encodeString8bit(text, 0, QR_ECLEVEL_M) else { return nil }
        defer { QRcode_free(code) }
        let width = Int(code.pointee.width)
        guard width > 0, let data = code.pointee.data else { return nil }
        let quiet = 4
        let size = width + 2 * quiet
        // Bit 0 of each byte is "dark module" (libqrencode's documented layout).
        func dark(_ x: Int, _ y: Int) -> Bool {
            let mx = x - quiet, my = y - quiet
            guard mx >= 0, my >= 0, mx < width, my < width else { return false }
            return data[my * width + mx] & 1 == 1
        }
        var out = ""
        var y = 0
        while y < size {
            for x in 0..<size {
                // Light modules are drawn as blocks and dark ones as the (dark) terminal
                // background, the usual rendering for light-on-dark terminals.
                switch (dark(x, y), dark(x, y + 1)) {
                case (false, false): out += "█"
                case (false, true): out += "▀"
                case (true, false): out += "▄"
                case (true, true): out += " "
                }
            }
            out += "\n"
            y += 2
        }
        return out
    }
}
