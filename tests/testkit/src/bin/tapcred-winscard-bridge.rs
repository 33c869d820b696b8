//! `tapcred-winscard-bridge [PORT]`: serve the test-only `winscard.dll`
//! (tests/testkit/winscard/) from pcscd on this machine, on 127.0.0.1:PORT (default: a free
//! port). Prints `listening on 127.0.0.1:PORT`, then serves until killed. Run a Windows
//! program under Wine with the DLL beside it, `WINEDLLOVERRIDES=winscard=n` and
//! `TAPCRED_WINSCARD_BRIDGE_PORT=PORT`.

#[cfg(unix)]
fn main() {
    let port = match std::env::args().nth(1).map(|p| p.parse::<u16>()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            eprintln!("usage: tapcred-winscard-bridge [PORT]");
            std::process::exit(2);
        }
    };
    let bridge = match tapcred_testkit::winscard_bridge::Bridge::start(port) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tapcred-winscard-bridge: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on 127.0.0.1:{}", bridge.port());
    loop {
        std::thread::park();
    }
}

#[cfg(not(unix))]
fn main() {
    eprintln!("tapcred-winscard-bridge serves Wine from a Linux pcscd: it runs on Linux only");
    std::process::exit(2);
}
