internal import CPOSIX

/// The clocks.
public enum Clocks {
    /// Unix time in seconds (CLOCK_REALTIME; clock_gettime serves both clocks, so the module
    /// imports one libc function, not two — each import is a symbol lookup at every load).
    public static func unixTime() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }

    /// Milliseconds on the monotonic clock, for deadlines that must not jump with the
    /// wall clock.
    public static func monotonicMilliseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int(ts.tv_sec) * 1000 + Int(ts.tv_nsec) / 1_000_000
    }

    /// mktime(3): a local date and time as Unix time; nil when it cannot be represented.
    public static func localTime(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) -> Int64? {
        var t = tm()
        t.tm_year = Int32(truncatingIfNeeded: year - 1900)
        t.tm_mon = Int32(truncatingIfNeeded: month - 1)
        t.tm_mday = Int32(truncatingIfNeeded: day)
        t.tm_hour = Int32(truncatingIfNeeded: hour)
        t.tm_min = Int32(truncatingIfNeeded: minute)
        t.tm_sec = Int32(truncatingIfNeeded: second)
        t.tm_isdst = -1
        let r = mktime(&t)
        return r == -1 ? nil : Int64(r)
    }
}
