//! How the process takes memory from the system: one malloc arena instead of glibc's default of
//! eight per core.
//!
//! glibc gives each thread that meets a locked arena an arena of its own, and memory freed in
//! one arena is reused only by the threads that allocate from it. The service's threads (the
//! runtime's workers, its blocking pool, sled's flusher) each touch large, short-lived buffers
//! (an upload of 5,000 products, a batch of answers), so every arena grows to the largest of
//! them and keeps it: the memory benchmark held 287 MiB resident at 100,000 products with
//! glibc's default against 131 MiB with one arena, for the same heap. Small allocations stay
//! on each thread's own cache (glibc's tcache), so one arena costs little in contention.

/// Limits malloc to one arena, unless the operator chose otherwise with `MALLOC_ARENA_MAX`
/// (which glibc reads itself). Call it first in `main`, before any thread starts.
pub fn one_arena() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets a tunable of glibc's allocator; it is called before any
        // other thread exists, and M_ARENA_MAX with a positive value is a documented use.
        let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        if set != 1 {
            // mallopt answers 1 on success; a failure leaves glibc's default, which works.
            eprintln!("campaignd: could not limit malloc to one arena");
        }
    }
}
