//! The `topgate` binary: the process allocator, then the CLI of [`topgate::cli`].

// mimalloc: the request path allocates many small short-lived buffers (parameters, rows,
// envelopes); glibc malloc spent ~10% of server CPU there under load, mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    topgate::cli::main()
}
