//! Serve a virtual USB HID YubiKey (see `tapcred_testkit::hidraw`) by hand:
//! `unshare -m --propagation private tapcred-hid-key DIR/key.json`, then enter with
//! `nsenter -t PID -m`. Control files beside the spec: `button`, `unplug`, `stop`.

fn main() {
    let Some(spec) = std::env::args_os().nth(1) else {
        eprintln!("usage: unshare -m --propagation private tapcred-hid-key SPEC.json");
        std::process::exit(2);
    };
    #[cfg(target_os = "linux")]
    if let Err(e) = tapcred_testkit::hidraw::serve(std::path::Path::new(&spec)) {
        eprintln!("tapcred-hid-key: {e}");
        std::process::exit(1);
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = spec;
        eprintln!("tapcred-hid-key: Linux only (hidraw, FUSE, mount namespaces)");
        std::process::exit(1);
    }
}
