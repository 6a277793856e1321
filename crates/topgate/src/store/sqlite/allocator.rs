//! SQLite's memory allocator: mimalloc, which the `topgate` binary also uses for Rust's
//! allocations, instead of the C library's `malloc`.
//!
//! Left to itself, SQLite allocated from glibc, whose per-thread arenas the writer and the
//! reader threads grew and trimmed over and over (`mprotect` calls under load), and whose
//! `malloc`/`free`, behind SQLite's own size header, were about a sixth of the writer's
//! instructions per pay notice (callgrind). mimalloc knows the size of each of its blocks, so
//! SQLite keeps no header either.

use std::os::raw::{c_int, c_void};

use libmimalloc_sys::{mi_free, mi_malloc, mi_realloc, mi_usable_size};
use rusqlite::ffi;

unsafe extern "C" fn x_malloc(size: c_int) -> *mut c_void {
    // SAFETY: mi_malloc takes any size; SQLite never asks for a negative one.
    unsafe { mi_malloc(usize::try_from(size).unwrap_or(0)) }
}

unsafe extern "C" fn x_free(block: *mut c_void) {
    // SAFETY: SQLite frees only blocks this allocator gave it.
    unsafe { mi_free(block) }
}

unsafe extern "C" fn x_realloc(block: *mut c_void, size: c_int) -> *mut c_void {
    // SAFETY: as for x_free; SQLite never asks for a negative size.
    unsafe { mi_realloc(block, usize::try_from(size).unwrap_or(0)) }
}

unsafe extern "C" fn x_size(block: *mut c_void) -> c_int {
    // SAFETY: as for x_free. SQLite's blocks are far below 2 GiB.
    unsafe { c_int::try_from(mi_usable_size(block)).unwrap_or(c_int::MAX) }
}

unsafe extern "C" fn x_roundup(size: c_int) -> c_int {
    size.saturating_add(7) & !7
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// Points SQLite's allocations at mimalloc. Must run before SQLite initialises; afterwards
/// SQLite refuses the change (`SQLITE_MISUSE`) and keeps its own allocator, which is harmless.
pub fn install() {
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(x_malloc),
        xFree: Some(x_free),
        xRealloc: Some(x_realloc),
        xSize: Some(x_size),
        xRoundup: Some(x_roundup),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to an sqlite3_mem_methods, which SQLite
    // copies before returning; the functions it names live as long as the process.
    unsafe {
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_MALLOC,
            &methods as *const ffi::sqlite3_mem_methods,
        );
    }
}
