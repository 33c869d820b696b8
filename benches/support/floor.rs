//! The floor of the warm path, in Rust: start a process, read one file, write its bytes to
//! stdout, exit. `benches/run.sh` compiles this with `rustc -C opt-level=3` (no crates, no
//! Cargo profile) next to the release binaries as `tapcred-bench-floor`; the driver times it
//! on the very cache file the warm `credential-process` answers from, interleaved with `cat`
//! of that file and the warm call itself.

use std::io::Write;

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: tapcred-bench-floor FILE");
        std::process::exit(2);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tapcred-bench-floor: {}: {e}", path.to_string_lossy());
            std::process::exit(1);
        }
    };
    if std::io::stdout().write_all(&bytes).is_err() {
        std::process::exit(1);
    }
}
