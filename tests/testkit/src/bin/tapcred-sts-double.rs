//! `tapcred-sts-double --config FILE [--port N]`: run the strict STS double as a process.
//! Prints `listening on http://127.0.0.1:PORT` on stdout, then serves until killed.

use std::io::Write;
use std::path::PathBuf;
use tapcred_testkit::sts_double::{Config, StsDouble};

const USAGE: &str = "usage: tapcred-sts-double --config FILE [--port N]";

fn main() {
    let mut config: Option<PathBuf> = None;
    let mut port: u16 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config = args.next().map(PathBuf::from),
            "--port" => {
                port = match args.next().and_then(|p| p.parse().ok()) {
                    Some(p) => p,
                    None => fail("--port needs a number"),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                println!(
                    "Admin surface: GET /_double/stats, POST /_double/throttle?n=N, POST /_double/revoke-all,"
                );
                println!(
                    "POST /_double/issued-lifetime?secs=N, POST /_double/clock-offset?secs=N, POST /_double/reset-stats"
                );
                println!(
                    "GET /_double/iam, POST /_double/iam-fail?action=A&n=N&code=C (IAM virtual MFA devices)"
                );
                return;
            }
            other => fail(&format!("unknown argument {other}")),
        }
    }
    let Some(path) = config else {
        fail("--config FILE is required")
    };
    let config = Config::from_file(&path).unwrap_or_else(|e| fail(&e));
    let double = StsDouble::start_on(config, port).unwrap_or_else(|e| fail(&e));
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {}", double.endpoint());
    let _ = out.flush();
    loop {
        std::thread::park();
    }
}

fn fail(message: &str) -> ! {
    eprintln!("tapcred-sts-double: {message}");
    eprintln!("{USAGE}");
    std::process::exit(2);
}
