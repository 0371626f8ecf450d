//! The `mmkd` binary: parses the command line and dispatches to `mmkd::cli`. Exit codes: 0
//! success, 2 bad input or usage, 1 internal failure.

use std::process::ExitCode;

use clap::Parser;

// Fresh pages from the system allocator are zeroed by the kernel on every large tensor; mimalloc
// reuses them (measured: see docs/DECISIONS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Like any Unix tool, stop quietly when the reader of our output goes away (`| head`).
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match mmkd::cli::run(mmkd::cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = mmkd::cli::exit_code(&e);
            // Bad input: the one-line message; an internal failure: the whole chain of causes.
            if code == 2 {
                eprintln!("error: {e}")
            } else {
                eprintln!("error: {e:#}")
            }
            ExitCode::from(code)
        }
    }
}
