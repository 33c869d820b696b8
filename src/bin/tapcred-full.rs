//! `tapcred-full`: the whole program, which the `tapcred` launcher hands every call it does
//! not answer itself (src/cli/launcher.rs).
fn main() {
    std::process::exit(tapcred::cli::main());
}
