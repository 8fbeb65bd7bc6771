//! The `ipm` binary: a thin shell over the library.
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    ipm::cli::main()
}
