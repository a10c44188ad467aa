internal import CPCSCOnUse
import SmartCard
import OTPCore

/// The only file that calls libpcsclite. Each method names the SCard* call it wraps.
///
/// A context talks to pcscd over its UNIX socket. Waiting for a card uses
/// `SCardGetStatusChange`, which blocks in pcscd until something happens: no polling,
/// so a login that waits 30 s for a tap costs no CPU.
public final class PCSCContext: CardSlots {
    private let handle: SCARDCONTEXT

    /// The special reader name that reports readers being added or removed.
    static let plugAndPlayReader = "\\\\?PnP?\\Notification"

    /// `SCardEstablishContext(SCARD_SCOPE_SYSTEM)`.
    public init() throws(CardError) {
        var h: SCARDCONTEXT = 0
        let rv = lou_SCardEstablishContext(DWORD(SCARD_SCOPE_SYSTEM), nil, nil, &h)
        guard rv == SCARD_S_SUCCESS else { throw Self.error(rv, "SCardEstablishContext") }
        handle = h
    }

    deinit { lou_SCardReleaseContext(handle) }

    /// Maps an SCARD_* result to a `CardError`.
    static func error(_ rv: LONG, _ function: String) -> CardError {
        switch rv {
        case SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED: return .noService
        case SCARD_E_NO_READERS_AVAILABLE, SCARD_E_UNKNOWN_READER, SCARD_E_READER_UNAVAILABLE: return .noReaders
        case SCARD_E_TIMEOUT: return .timeout
        case SCARD_W_REMOVED_CARD, SCARD_E_NO_SMARTCARD, SCARD_W_RESET_CARD: return .cardRemoved
        case SCARD_E_SHARING_VIOLATION: return .sharingViolation
        case SCARD_W_UNRESPONSIVE_CARD, SCARD_W_UNPOWERED_CARD, SCARD_E_NOT_TRANSACTED, SCARD_E_COMM_DATA_LOST:
            return .unresponsiveCard
        default: return .pcsc(function: function, code: Int64(rv))
        }
    }

    /// `SCardListReaders`: reader names containing `filter` (all when nil or empty).
    public func readers(matching filter: String? = nil) throws(CardError) -> [String] {
        var length: DWORD = 0
        var rv = lou_SCardListReaders(handle, nil, nil, &length)
        if rv == SCARD_E_NO_READERS_AVAILABLE { return [] }
        guard rv == SCARD_S_SUCCESS else { throw Self.error(rv, "SCardListReaders") }
        guard length > 0, length < 65536 else { return [] }
        var buffer = [CChar](repeating: 0, count: Int(length))
        rv = lou_SCardListReaders(handle, nil, &buffer, &length)
        if rv == SCARD_E_NO_READERS_AVAILABLE { return [] }
        guard rv == SCARD_S_SUCCESS else { throw Self.error(rv, "SCardListReaders") }
        // A multi-string: names separated by NUL, ended by an empty name.
        // The multi-string: names, each ended by a NUL, an empty one at the end.
        var names: [String] = []
        var start = 0
        for i in buffer.indices where buffer[i] == 0 {
            if i > start { names.append(String(decoding: buffer[start..<i].map { UInt8(bitPattern: $0) }, as: UTF8.self)) }
            start = i + 1
        }
        guard let filter, !filter.isEmpty else { return names }
        return names.filter { Self.name($0, contains: filter) }
    }

    /// Whether `name` contains `part`, byte for byte (reader names are ASCII in practice).
    static func name(_ name: String, contains part: String) -> Bool {
        let whole = Array(name.utf8), piece = Array(part.utf8)
        guard !piece.isEmpty else { return true }
        guard piece.count <= whole.count else { return false }
        for start in 0...(whole.count - piece.count) where whole[start..<(start + piece.count)].elementsEqual(piece) {
            return true
        }
        return false
    }

    /// `SCardConnect` in shared mode, T=0 or T=1.
    public func connect(reader: String) throws(CardError) -> PCSCCard {
        var card: SCARDHANDLE = 0
        var protocolInUse: DWORD = 0
        let rv = lou_SCardConnect(handle, reader, DWORD(SCARD_SHARE_SHARED),
                              DWORD(SCARD_PROTOCOL_T0) | DWORD(SCARD_PROTOCOL_T1), &card, &protocolInUse)
        guard rv == SCARD_S_SUCCESS else { throw Self.error(rv, "SCardConnect") }
        return PCSCCard(handle: card, activeProtocol: protocolInUse)
    }

    /// The state of one reader as `SCardGetStatusChange` reports it.
    public struct ReaderState: Sendable, Equatable {
        public var reader: String
        public var eventState: UInt
        public var cardPresent: Bool { eventState & UInt(SCARD_STATE_PRESENT) != 0 && eventState & UInt(SCARD_STATE_MUTE) == 0 }
    }

    /// Waits until a card is present in a reader matching `filter` and not in `skip`
    /// (readers whose card was already tried and was not the right one). A card already
    /// in a reader counts at once. Readers that appear while waiting are picked up
    /// through the PnP notification; readers in `skip` are watched and released from it
    /// when their card leaves. `timeoutMs` is the whole wait; `SCardGetStatusChange`
    /// blocks in pcscd, so this costs no CPU while nothing happens.
    ///
    /// Returns the reader name that has a card.
    public func waitForCard(filter: String?, skip: inout [String], timeoutMs: Int, now: () -> Int) throws(CardError) -> String {
        let deadline = now() + max(0, timeoutMs)
        // The last state seen of each reader (a short list: no hashing code in the module).
        var known: [(reader: String, state: UInt)] = []
        func lastState(_ reader: String) -> UInt? { known.first(where: { $0.reader.equals(reader) })?.state }
        while true {
            let names = try readers(matching: filter)
            skip.removeAll { !names.containsBytes(of: $0) }
            var states: [(String, UInt)] = names.map { ($0, lastState($0) ?? 0) }
            states.append((Self.plugAndPlayReader, lastState(Self.plugAndPlayReader) ?? 0))
            let remaining = deadline - now()
            // First pass with UNAWARE states returns at once with the current states.
            let firstPass = names.contains { lastState($0) == nil }
            let wait = firstPass ? 0 : max(0, remaining)
            if !firstPass && remaining <= 0 { throw .timeout }
            let result = try getStatusChange(states, timeoutMs: wait)
            for s in result {
                known.removeAll { $0.reader.equals(s.reader) }
                known.append((s.reader, s.eventState & ~UInt(SCARD_STATE_CHANGED)))
                if !s.reader.equals(Self.plugAndPlayReader) && !s.cardPresent { skip.removeAll { $0.equals(s.reader) } }
            }
            if let ready = result.first(where: { r in !r.reader.equals(Self.plugAndPlayReader) && r.cardPresent && !skip.containsBytes(of: r.reader) }) {
                return ready.reader
            }
            if firstPass && names.isEmpty && remaining <= 0 { throw .noReaders }
        }
    }

    /// Whether a responsive card is in `reader` right now (`SCardGetStatusChange` with an
    /// UNAWARE state and no wait). False for an unknown reader.
    public func cardPresent(in reader: String) -> Bool {
        (try? getStatusChange([(reader, 0)], timeoutMs: 0))?.first?.cardPresent ?? false
    }

    /// `SCardGetStatusChange` over the given readers and their last-known states.
    /// A timeout is not an error here: it returns the states unchanged.
    func getStatusChange(_ readers: [(String, UInt)], timeoutMs: Int) throws(CardError) -> [ReaderState] {
        // The C strings must outlive the call: each is copied into an allocation of its
        // own, freed when the call returns.
        let cNames: [[CChar]] = readers.map { Array($0.0.utf8CString) }
        let pointers: [UnsafeMutablePointer<CChar>] = cNames.map { name in
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: name.count)
            p.initialize(from: name, count: name.count)
            return p
        }
        defer { for p in pointers { p.deallocate() } }
        var states: [SCARD_READERSTATE] = []
        for (i, (_, current)) in readers.enumerated() {
            var s = SCARD_READERSTATE()
            s.szReader = UnsafePointer(pointers[i])
            s.dwCurrentState = DWORD(current)
            states.append(s)
        }
        let timeout = DWORD(clamping: timeoutMs)
        let rv = states.withUnsafeMutableBufferPointer { buf in
            lou_SCardGetStatusChange(handle, timeout, buf.baseAddress, DWORD(buf.count))
        }
        if rv == SCARD_E_TIMEOUT {
            return readers.map { ReaderState(reader: $0.0, eventState: $0.1) }
        }
        // No reader at all: pcscd answers the PnP-only wait with "unknown reader" on some versions.
        if rv == SCARD_E_UNKNOWN_READER && readers.count == 1 { throw .noReaders }
        guard rv == SCARD_S_SUCCESS else { throw Self.error(rv, "SCardGetStatusChange") }
        return zip(readers, states).map { ReaderState(reader: $0.0.0, eventState: UInt($0.1.dwEventState)) }
    }
}

/// A connected card: the PC/SC `CardTransport`.
public final class PCSCCard: CardTransport {
    private let handle: SCARDHANDLE
    private let activeProtocol: DWORD
    /// Largest answer accepted: an extended APDU's 65536 bytes plus the status word.
    static let maxResponse = 65538

    init(handle: SCARDHANDLE, activeProtocol: DWORD) {
        self.handle = handle
        self.activeProtocol = activeProtocol
    }

    /// `SCardDisconnect(SCARD_LEAVE_CARD)`.
    deinit { lou_SCardDisconnect(handle, DWORD(SCARD_LEAVE_CARD)) }

    /// `SCardTransmit`.
    public func transmit(_ apdu: [UInt8]) throws(CardError) -> [UInt8] {
        var pci = SCARD_IO_REQUEST(dwProtocol: activeProtocol, cbPciLength: DWORD(MemoryLayout<SCARD_IO_REQUEST>.size))
        var out = [UInt8](repeating: 0, count: Self.maxResponse)
        var length = DWORD(out.count)
        let rv = apdu.withUnsafeBufferPointer { a in
            out.withUnsafeMutableBufferPointer { o in
                lou_SCardTransmit(handle, &pci, a.baseAddress, DWORD(a.count), nil, o.baseAddress, &length)
            }
        }
        guard rv == SCARD_S_SUCCESS else { throw PCSCContext.error(rv, "SCardTransmit") }
        return Array(out.prefix(Int(min(length, DWORD(out.count)))))
    }
}
