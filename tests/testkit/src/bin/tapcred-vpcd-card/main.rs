//! `tapcred-vpcd-card`: the virtual YubiKey as a vpcd card (see `unix.rs`). It drives pcscd,
//! network namespaces and unix sockets, so it runs on Linux (and other Unix) only; on Windows
//! it builds (the workspace's Windows clippy gate covers every target) and says so.

#[cfg(unix)]
mod unix;

#[cfg(unix)]
fn main() {
    unix::main()
}

#[cfg(not(unix))]
fn main() {
    eprintln!("tapcred-vpcd-card drives pcscd and unix sockets: it runs on Linux only");
    std::process::exit(2);
}
