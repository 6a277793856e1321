//! The writer connection's VFS: SQLite's default one, except that a WAL file gathers
//! consecutive writes and hands them to the operating system in one `pwrite`.
//!
//! SQLite writes every WAL frame as two writes, the 24-byte frame header and then the page:
//! about forty system calls for one batch of pay notices. On a virtual machine each was
//! 10-20 µs of the writer's time (`perf trace`), and the writer thread is the serial stage
//! every write goes through. Gathered, a batch's frames are one call.
//!
//! Nothing SQLite (or another connection, or another process) can observe changes:
//! - a write that continues the pending run is appended to it; any other write, and every
//!   other call on the file (read, size, sync, truncate, file control, close), first writes
//!   the pending run out, so this connection always sees the file it wrote;
//! - the run is written out right after the frame that commits a transaction (its header
//!   carries the database size), before SQLite publishes the commit in the shared WAL index,
//!   so other connections only ever read frames that are in the file; with
//!   `synchronous=FULL` the sync that follows every commit would write it out anyway;
//! - frames still pending belong to a transaction that has not committed: a crash loses
//!   them, as it loses any uncommitted frame.
//!
//! Files other than WAL files are opened by the default VFS as they are, in place.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections open this VFS by.
pub const NAME: &str = "topgate-wal";
const NAME_C: &CStr = c"topgate-wal";

/// The longest run written in one call: the default VFS asserts that a write is shorter than
/// 128 KiB (and truncates a longer one to its low 17 bits).
const MAX_RUN: usize = 0x1ffff;

/// Size of a WAL frame header; bytes 4..8 of it are the database size after a commit, zero
/// in every other frame.
const FRAME_HEADER: usize = 24;

/// A WAL file: SQLite's handle, the pending run, and the default VFS's file it wraps (which
/// lives in the same allocation, right after this struct).
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    pending: Vec<u8>,
    /// File offset of the first pending byte.
    pending_at: i64,
    /// The last write was a commit frame's header: write the run out after its page.
    commit_page_next: bool,
}

/// Where the wrapped file starts in the allocation SQLite makes for a file.
const INNER_OFFSET: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

/// The outcome of registering the VFS: SQLite's result code on failure.
static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();

/// Registers the VFS (once per process); the error is SQLite's result code.
pub fn register() -> Result<(), c_int> {
    *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find and sqlite3_vfs_register are thread-safe; the VFS
        // object is leaked, as SQLite keeps a pointer to it for the life of the process.
        unsafe {
            let inner = ffi::sqlite3_vfs_find(ptr::null());
            if inner.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            let mut vfs: ffi::sqlite3_vfs = ptr::read(inner);
            vfs.szOsFile =
                c_int::try_from(INNER_OFFSET).map_err(|_| ffi::SQLITE_ERROR)? + (*inner).szOsFile;
            vfs.zName = NAME_C.as_ptr();
            vfs.pNext = ptr::null_mut();
            vfs.pAppData = inner.cast();
            vfs.xOpen = Some(open);
            match ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0) {
                ffi::SQLITE_OK => Ok(()),
                rc => Err(rc),
            }
        }
    })
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // The default VFS, which `register` keeps as this one's application data.
    let inner_vfs = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
    let Some(inner_open) = inner_vfs.as_ref().and_then(|v| v.xOpen) else {
        return ffi::SQLITE_ERROR;
    };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // The allocation is larger than the default VFS needs: its file lives at the start.
        return inner_open(inner_vfs, name, file, flags, out_flags);
    }
    let inner = file
        .cast::<u8>()
        .add(INNER_OFFSET)
        .cast::<ffi::sqlite3_file>();
    let rc = inner_open(inner_vfs, name, inner, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        // SQLite closes a file whose methods are set even when its open failed; this one is
        // not wrapped, so the wrapped file is closed here.
        if let Some(close) = (*inner).pMethods.as_ref().and_then(|m| m.xClose) {
            close(inner);
        }
        (*file).pMethods = ptr::null();
        return rc;
    }
    ptr::write(
        file.cast::<WalFile>(),
        WalFile {
            base: ffi::sqlite3_file {
                pMethods: &WAL_METHODS,
            },
            inner,
            pending: Vec::new(),
            pending_at: 0,
            commit_page_next: false,
        },
    );
    ffi::SQLITE_OK
}

/// The wrapper of a file this VFS opened as a WAL file.
unsafe fn wal<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
    &mut *file.cast::<WalFile>()
}

/// The wrapped file's methods.
unsafe fn methods<'a>(file: &WalFile) -> &'a ffi::sqlite3_io_methods {
    &*(*file.inner).pMethods
}

/// Writes the pending run out; the run is dropped whatever the outcome (SQLite abandons the
/// transaction on an error).
unsafe fn write_out(file: &mut WalFile) -> c_int {
    if file.pending.is_empty() {
        return ffi::SQLITE_OK;
    }
    let rc = match (methods(file).xWrite, c_int::try_from(file.pending.len())) {
        (Some(write), Ok(len)) => write(
            file.inner,
            file.pending.as_ptr().cast(),
            len,
            file.pending_at,
        ),
        _ => ffi::SQLITE_IOERR_WRITE,
    };
    file.pending.clear();
    rc
}

/// Calls `$method` of the wrapped file after writing the pending run out.
macro_rules! after_write_out {
    ($file:expr, $method:ident, $($arg:expr),*) => {{
        let file = wal($file);
        let rc = write_out(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        match methods(file).$method {
            Some(method) => method(file.inner, $($arg),*),
            None => ffi::SQLITE_IOERR,
        }
    }};
}

/// Calls `$method` of the wrapped file (`$default` when it has none).
macro_rules! forward {
    ($file:expr, $method:ident, $default:expr, $($arg:expr),*) => {{
        let file = wal($file);
        match methods(file).$method {
            Some(method) => method(file.inner, $($arg),*),
            None => $default,
        }
    }};
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let wal_file = wal(file);
    let written = write_out(wal_file);
    let closed = match methods(wal_file).xClose {
        Some(close) => close(wal_file.inner),
        None => ffi::SQLITE_OK,
    };
    ptr::drop_in_place(file.cast::<WalFile>());
    if written != ffi::SQLITE_OK {
        written
    } else {
        closed
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    let wal_file = wal(file);
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
    let continues = wal_file.pending_at + wal_file.pending.len() as i64 == offset;
    if !wal_file.pending.is_empty() && (!continues || wal_file.pending.len() + len > MAX_RUN) {
        let rc = write_out(wal_file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if wal_file.pending.is_empty() {
        wal_file.pending_at = offset;
    }
    wal_file.pending.extend_from_slice(bytes);
    let commit_page = std::mem::replace(
        &mut wal_file.commit_page_next,
        len == FRAME_HEADER && bytes[4..8] != [0; 4],
    );
    if commit_page {
        return write_out(wal_file);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    after_write_out!(file, xRead, buf, amount, offset)
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    after_write_out!(file, xTruncate, size)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    after_write_out!(file, xSync, flags)
}

unsafe extern "C" fn file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    after_write_out!(file, xFileSize, size)
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    after_write_out!(file, xFileControl, op, arg)
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xLock, ffi::SQLITE_OK, level)
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xUnlock, ffi::SQLITE_OK, level)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    forward!(file, xCheckReservedLock, ffi::SQLITE_OK, out)
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xSectorSize, 4096,)
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xDeviceCharacteristics, 0,)
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    page: c_int,
    page_size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    forward!(
        file,
        xShmMap,
        ffi::SQLITE_IOERR,
        page,
        page_size,
        extend,
        out
    )
}

unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    forward!(file, xShmLock, ffi::SQLITE_IOERR, offset, n, flags)
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    let file = wal(file);
    if let Some(barrier) = methods(file).xShmBarrier {
        barrier(file.inner);
    }
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    forward!(file, xShmUnmap, ffi::SQLITE_OK, delete)
}

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    *out = ptr::null_mut();
    after_write_out!(file, xFetch, offset, amount, out)
}

unsafe extern "C" fn unfetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    page: *mut c_void,
) -> c_int {
    forward!(file, xUnfetch, ffi::SQLITE_OK, offset, page)
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};
