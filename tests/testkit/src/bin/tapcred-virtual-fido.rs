//! The FIDO interface of a virtual YubiKey on stdin/stdout, for clients that can talk to a
//! CTAPHID device through pipes (python-fido2's `CtapHidDevice` with its own connection).
//!
//! stdin: 64-byte output reports, back to back. stdout: 64-byte input reports. Options:
//! - `--button PATH`: a file that, once it exists while a request waits for a touch, is
//!   that touch (the file is then removed);
//! - `--touch-timeout-ms N`: how long a request waits for a touch (default 30000);
//! - `--dump PATH`: at the end of stdin, write the credentials as JSON
//!   `{"<id hex>": {"with_uv": "<hex>", "without_uv": "<hex>"}}` (their CredRandom values,
//!   so a test can compute the `hmac-secret` output on its own);
//! - `--pin PIN`: start with this PIN set;
//! - `--fault pin2-kdf`: derive PIN protocol 2's keys the wrong way round.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use data_encoding::HEXLOWER;
use tapcred_testkit::hid_report::HidInterface;
use tapcred_testkit::virtual_ctaphid::{FidoInterface, REPORT_SIZE};
use tapcred_testkit::virtual_fido2::VirtualAuthenticator;

struct Options {
    button: Option<PathBuf>,
    dump: Option<PathBuf>,
    touch_timeout: Duration,
    pin: Option<String>,
    pin2_kdf_fault: bool,
}

fn usage(message: &str) -> ! {
    eprintln!("tapcred-virtual-fido: {message}");
    std::process::exit(2);
}

fn options() -> Options {
    let mut o = Options {
        button: None,
        dump: None,
        touch_timeout: Duration::from_secs(30),
        pin: None,
        pin2_kdf_fault: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--button" => o.button = Some(value().into()),
            "--dump" => o.dump = Some(value().into()),
            "--touch-timeout-ms" => {
                let ms = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--touch-timeout-ms takes milliseconds"));
                o.touch_timeout = Duration::from_millis(ms);
            }
            "--pin" => o.pin = Some(value()),
            "--fault" => match value().as_str() {
                "pin2-kdf" => o.pin2_kdf_fault = true,
                other => usage(&format!("unknown fault {other:?} (known: pin2-kdf)")),
            },
            other => usage(&format!("unknown option {other:?}")),
        }
    }
    o
}

fn dump(model: &VirtualAuthenticator, path: &PathBuf) {
    let mut all = serde_json::Map::new();
    for id in model.credential_ids() {
        let r = model.cred_randoms(&id).expect("a listed credential");
        all.insert(
            HEXLOWER.encode(&id),
            serde_json::json!({
                "with_uv": HEXLOWER.encode(&r.with_uv),
                "without_uv": HEXLOWER.encode(&r.without_uv),
            }),
        );
    }
    std::fs::write(path, serde_json::Value::Object(all).to_string())
        .unwrap_or_else(|e| usage(&format!("cannot write {}: {e}", path.display())));
}

fn main() {
    let o = options();
    let model = VirtualAuthenticator::new();
    if let Some(pin) = &o.pin {
        model.set_pin(pin);
    }
    let mut key = FidoInterface::new(model.clone(), o.touch_timeout);
    if o.pin2_kdf_fault {
        key = key.with_protocol2_kdf_fault();
    }
    let control = key.control();

    let (tx, rx) = mpsc::channel::<Option<[u8; REPORT_SIZE]>>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut report = [0u8; REPORT_SIZE];
            let got = stdin.read_exact(&mut report).is_ok();
            if tx.send(got.then_some(report)).is_err() || !got {
                return;
            }
        }
    });

    let mut stdout = std::io::stdout().lock();
    loop {
        let wait = key
            .poll_after()
            .unwrap_or(Duration::from_millis(20))
            .min(Duration::from_millis(20));
        match rx.recv_timeout(wait) {
            Ok(Some(report)) => key.write_output(&report),
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(button) = &o.button
            && button.exists()
            && control.press_if_waiting()
        {
            let _ = std::fs::remove_file(button);
        }
        while let Some(report) = key.read_input() {
            if stdout
                .write_all(&report)
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return;
            }
        }
    }
    if let Some(path) = &o.dump {
        dump(&model, path);
    }
}
