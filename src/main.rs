//! `tapcred`: the launcher (src/cli/launcher.rs): a warm `credential-process` answered by a
//! small binary; everything else runs `tapcred-full` in its place.
fn main() {
    std::process::exit(tapcred::cli::launcher::main());
}
