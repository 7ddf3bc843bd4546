/// glibc's allocator settings for a long-running controller whose budget is resident memory.
public enum ProcessMemory {
    /// Hands memory freed after a burst (initial lists, many reconciles) back to the system: glibc keeps freed
    /// blocks in its arenas otherwise.
    public static func releaseFreed() {
        #if canImport(Glibc)
        _ = glibcMallocTrim(0)
        #endif
    }
}

#if canImport(Glibc)
// glibc only (musl has no malloc_trim). The Glibc module does not export malloc.h.
@_silgen_name("malloc_trim")
private func glibcMallocTrim(_ pad: Int) -> Int32
#endif
