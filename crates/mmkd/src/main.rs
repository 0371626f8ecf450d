//! The `mmkd` binary: parses the command line and dispatches to `mmkd::cli`. Exit codes: 0
//! success, 2 bad input or usage, 1 internal failure.

use std::process::ExitCode;

use clap::Parser;

// Fresh pages from the system allocator are zeroed by the kernel on every large tensor; mimalloc
// reuses them (measured: see docs/DECISIONS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its index in `mi_option_e`, mimalloc.h of the bundled
/// v3; the Rust bindings name no constant for it): milliseconds before freed memory goes back to
/// the system, 1000 by default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keep freed memory for 10 s instead of mimalloc's 1 s before returning it to the system: a
/// training step frees its activations and the next step allocates them again, and memory
/// given back comes back as fresh pages the kernel must zero. Measured (bench/NOTES.md,
/// "Keeping freed memory"): the `paper` teacher step 18.2 s -> 14.9 s, its peak 5.58 -> 5.89 GB;
/// never returning it was faster still (13.7 s) but left the peak at 7.42 GB.
/// `MIMALLOC_PURGE_DELAY` still decides where it is set.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator; no pointer is passed.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

/// Milliseconds mimalloc keeps freed memory (`keep_freed_memory`).
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

fn main() -> ExitCode {
    keep_freed_memory();
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

#[cfg(test)]
mod tests {
    /// The index names the purge delay: the option whose default is 1000 ms.
    #[test]
    fn the_purge_delay_option_is_where_main_sets_it() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads one integer option.
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) }, 1000);
        }
    }
}
