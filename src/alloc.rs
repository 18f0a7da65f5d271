//! The global allocator's tuning: mimalloc, returning freed memory at once.
//!
//! Measured with the load test (docs/performance.md): glibc malloc was ~16% of the
//! proxy's CPU on small requests; mimalloc gave about +20% req/s and +25-40%
//! single-stream blob MiB/s. With mimalloc's defaults, though, the peak RSS of 64
//! concurrent 512 MiB streams rose from ~63 to ~79 MiB. Not committing whole arenas
//! up front and purging freed pages at once brings it to ~55 MiB at the same speed.
//!
//! The arena option only counts if it is set before mimalloc creates its first
//! arena, i.e. before the first Rust allocation: `main.rs` therefore registers
//! [`tune`] as an ELF constructor (`.init_array`), which runs before `main` and
//! before the Rust runtime allocates anything. `tune` itself must not allocate.

/// `mi_option_arena_eager_commit` in `mimalloc.h` of mimalloc v3, which
/// libmimalloc-sys 0.1.49 builds by default (v2 has the same index). The crate is
/// pinned in Cargo.toml because these indices are positional.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
/// `mi_option_purge_delay` in the same header.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets mimalloc's options. Allocation-free, so it can run as a constructor.
pub extern "C" fn tune() {
    // SAFETY: mi_option_set only stores an integer in mimalloc's option table.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_the_ones_we_mean() {
        // reserve_os_memory is exported by name; its index confirms the header
        // layout the two positional constants above rely on.
        assert_eq!(libmimalloc_sys::mi_option_reserve_os_memory, 9);
        tune();
        // SAFETY: reads integers from mimalloc's option table.
        let (purge, eager) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
            )
        };
        assert_eq!((purge, eager), (0, 0));
    }
}
