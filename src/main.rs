//! The `threatpilot` binary: parse the command line and run it.
//!
//! mimalloc replaces the system allocator: the pipeline allocates and frees
//! many small strings per event, and glibc's allocator spent a sixth of the
//! end-to-end profile there.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    threatpilot::cli::main()
}
