//! `tapcred-vpcd-card`: the virtual YubiKey as a vpcd card, for scripts and benchmarks.
//!
//! ```text
//! tapcred-vpcd-card [--with-pcscd | --netns /proc/PID/ns/net] [--slot 0|1]
//!     [--serial N] [--firmware 5.4.3] [--no-management] [--touch-timeout-ms N]
//!     [--auto-press-ms N] [--control PATH] [--ready-file PATH]
//!     [--account NAME=BASE32[,touch][,period=N][,digits=N][,sha256|sha512][,hotp[=COUNTER]]]…
//!     [--otp-chalresp 1|2[,touch]]…
//! ```
//!
//! * `--with-pcscd`: start pcscd in a private network namespace (as `PcscStack`), insert
//!   the card, and run until SIGTERM/SIGINT, then stop pcscd.
//! * `--netns PATH`: enter that network namespace and connect to vpcd there.
//! * neither: connect to vpcd on 127.0.0.1 in the current namespace (e.g. under
//!   `nsenter --net=…`).
//!
//! Secrets: `--account` carries a test seed; the env var `TAPCRED_VYK_ACCOUNTS` (one spec
//! per line) keeps seeds out of argv. The OATH password comes only from
//! `TAPCRED_VYK_PASSWORD`. `--otp-chalresp SLOT` programs that OTP slot for HMAC-SHA1
//! challenge-response with a fresh random key (as `ykman otp chalresp --generate` does);
//! the key never leaves the process.
//!
//! `--control PATH` opens a unix socket taking one command per line: `press`,
//! `wait-touch [MS]`, `press-when-requested [MS]`, `touch-requests`, `remove`, `status`;
//! each answered with one line (`ok …` or `error …`).
//!
//! `tapcred-vpcd-card control PATH COMMAND [ARG]` is the matching client (exit 0 on `ok`).
//!
//! When ready, prints `ready reader="…" serial=N` on stdout (and writes it to
//! `--ready-file`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tapcred_testkit::pcsc_stack::{self, PcscStack};
use tapcred_testkit::virtual_yubikey::{
    Account, Algorithm, OtpSlot, VirtualYubiKey, VykConfig, VykHandle,
};

/// Set by SIGTERM/SIGINT (signal-hook's flag: no handler code of ours runs in the signal).
static STOP: std::sync::LazyLock<std::sync::Arc<AtomicBool>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(AtomicBool::new(false)));

struct Args {
    with_pcscd: bool,
    netns: Option<PathBuf>,
    slot: u8,
    control: Option<PathBuf>,
    ready_file: Option<PathBuf>,
    auto_press: Option<Duration>,
    config: VykConfig,
}

fn parse_account(spec: &str) -> Result<Account, String> {
    let (name, rest) = spec
        .split_once('=')
        .ok_or_else(|| "account spec must be NAME=BASE32[,options]".to_string())?;
    let mut parts = rest.split(',');
    let secret = parts.next().unwrap_or_default();
    let (mut touch, mut period, mut digits, mut algorithm, mut hotp) =
        (false, 30u32, 6u8, Algorithm::Sha1, None::<u32>);
    for opt in parts {
        let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
        let num = || {
            value
                .parse::<u32>()
                .map_err(|_| format!("account {name:?}: bad {key}={value}"))
        };
        match key {
            "touch" => touch = true,
            "period" => period = num()?,
            "digits" => digits = num()? as u8,
            "sha1" => algorithm = Algorithm::Sha1,
            "sha256" => algorithm = Algorithm::Sha256,
            "sha512" => algorithm = Algorithm::Sha512,
            "hotp" => hotp = Some(if value.is_empty() { 0 } else { num()? }),
            other => return Err(format!("account {name:?}: unknown option {other:?}")),
        }
    }
    let account = match hotp {
        Some(counter) => Account::hotp_base32(name, secret, counter),
        None => Account::totp_base32(name, secret),
    }
    .map_err(|e| format!("account {name:?}: {e}"))?;
    Ok(account
        .touch(touch)
        .period(period)
        .digits(digits)
        .algorithm(algorithm))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        with_pcscd: false,
        netns: None,
        slot: 0,
        control: None,
        ready_file: None,
        auto_press: None,
        config: VykConfig::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--with-pcscd" => args.with_pcscd = true,
            "--netns" => args.netns = Some(PathBuf::from(val()?)),
            "--slot" => {
                args.slot = match val()?.as_str() {
                    "0" => 0,
                    "1" => 1,
                    s => return Err(format!("--slot must be 0 or 1, not {s}")),
                }
            }
            "--serial" => {
                let v = val()?;
                args.config.serial = Some(v.parse().map_err(|_| format!("bad --serial {v}"))?);
            }
            "--firmware" => {
                let v = val()?;
                let p: Vec<u8> = v.split('.').filter_map(|x| x.parse().ok()).collect();
                if p.len() != 3 {
                    return Err(format!("--firmware wants X.Y.Z, not {v}"));
                }
                args.config.firmware = (p[0], p[1], p[2]);
            }
            "--no-management" => args.config.management = false,
            "--touch-timeout-ms" => {
                let v = val()?;
                args.config.touch_timeout = Duration::from_millis(
                    v.parse()
                        .map_err(|_| format!("bad --touch-timeout-ms {v}"))?,
                );
            }
            "--auto-press-ms" => {
                let v = val()?;
                args.auto_press = Some(Duration::from_millis(
                    v.parse().map_err(|_| format!("bad --auto-press-ms {v}"))?,
                ));
            }
            "--control" => args.control = Some(PathBuf::from(val()?)),
            "--ready-file" => args.ready_file = Some(PathBuf::from(val()?)),
            "--account" => {
                let spec = val()?;
                args.config.accounts.push(parse_account(&spec)?);
            }
            "--otp-chalresp" => {
                let spec = val()?;
                let (slot, touch) = match spec.split_once(',') {
                    Some((slot, "touch")) => (slot.to_string(), true),
                    None => (spec.clone(), false),
                    Some(_) => return Err(format!("--otp-chalresp wants 1|2[,touch], not {spec}")),
                };
                let slot = match slot.as_str() {
                    "1" => 1,
                    "2" => 2,
                    s => return Err(format!("--otp-chalresp: the slot is 1 or 2, not {s}")),
                };
                let mut key = [0u8; 20];
                getrandom::fill(&mut key).map_err(|e| format!("random OTP key: {e}"))?;
                args.config = args.config.otp_slot(slot, OtpSlot::hmac_sha1(key, touch));
                zeroize::Zeroize::zeroize(&mut key);
            }
            "-h" | "--help" => {
                println!("{}", HELP);
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if let Ok(list) = std::env::var("TAPCRED_VYK_ACCOUNTS") {
        for line in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
            args.config.accounts.push(parse_account(line)?);
        }
    }
    if let Ok(pw) = std::env::var("TAPCRED_VYK_PASSWORD")
        && !pw.is_empty()
    {
        args.config = args.config.password(&pw);
    }
    Ok(args)
}

const HELP: &str = "tapcred-vpcd-card [--with-pcscd | --netns /proc/PID/ns/net] [--slot 0|1] \
[--serial N] [--firmware X.Y.Z] [--no-management] [--touch-timeout-ms N] [--auto-press-ms N] \
[--control PATH] [--ready-file PATH] [--account NAME=BASE32[,touch][,period=N][,digits=N][,sha256|sha512][,hotp[=N]]]... \
[--otp-chalresp 1|2[,touch]]...\n\
env: TAPCRED_VYK_PASSWORD (OATH password), TAPCRED_VYK_ACCOUNTS (account specs, one per line)";

fn control_server(path: PathBuf, vyk: VykHandle) -> Result<(), String> {
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let vyk = vyk.clone();
            std::thread::spawn(move || {
                let Ok(mut out) = conn.try_clone() else {
                    return;
                };
                for line in BufReader::new(conn).lines().map_while(Result::ok) {
                    let mut words = line.split_whitespace();
                    let cmd = words.next().unwrap_or("");
                    let ms = words
                        .next()
                        .and_then(|w| w.parse::<u64>().ok())
                        .map_or(Duration::from_secs(15), Duration::from_millis);
                    let button = vyk.button();
                    let reply = match cmd {
                        "press" if button.press() => "ok pressed".to_string(),
                        "press" => "error card is not waiting for touch".to_string(),
                        "wait-touch" if button.wait_for_touch_request(ms) => {
                            "ok waiting".to_string()
                        }
                        "wait-touch" => "error no touch request".to_string(),
                        "press-when-requested" if button.press_when_requested(ms) => {
                            "ok pressed".to_string()
                        }
                        "press-when-requested" => "error no touch request".to_string(),
                        "touch-requests" => format!("ok {}", button.touch_requests()),
                        "remove" => {
                            vyk.remove();
                            "ok removed".to_string()
                        }
                        "status" => format!(
                            "ok waiting={} removed={} credentials={}",
                            button.is_waiting(),
                            vyk.is_removed(),
                            vyk.credential_ids().len()
                        ),
                        other => format!("error unknown command {other:?}"),
                    };
                    if writeln!(out, "{reply}").is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(())
}

fn announce(args: &Args, serial: Option<u32>) {
    let line = format!(
        "ready reader=\"{}\" serial={}",
        pcsc_stack::reader_name(args.slot),
        serial.map_or("none".to_string(), |s| s.to_string())
    );
    println!("{line}");
    let _ = std::io::stdout().flush();
    if let Some(f) = &args.ready_file {
        let _ = std::fs::write(f, format!("{line}\n"));
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, STOP.clone())
            .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }
    let serial = args.config.serial;
    let card = VirtualYubiKey::new(args.config.clone());
    let vyk = card.handle();
    vyk.set_auto_press(args.auto_press);
    if let Some(path) = &args.control {
        control_server(path.clone(), vyk.clone())?;
    }
    if args.with_pcscd {
        let mut stack = PcscStack::start()?;
        let handle = stack.insert(args.slot, card)?;
        announce(&args, serial);
        while !STOP.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(handle);
        drop(stack);
    } else {
        if let Some(ns) = &args.netns {
            pcsc_stack::enter_netns(ns)?;
        }
        let mut stream = pcsc_stack::connect_vpcd(args.slot, Duration::from_secs(10))?;
        let stream_for_stop = stream.try_clone().map_err(|e| e.to_string())?;
        let server = std::thread::spawn(move || {
            let mut card = card;
            let _ = pcsc_stack::serve_vpcd(&mut stream, &mut card);
        });
        announce(&args, serial);
        while !STOP.load(Ordering::SeqCst) && !server.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
        }
        vyk.remove();
        let _ = stream_for_stop.shutdown(std::net::Shutdown::Both);
        let _ = server.join();
    }
    if let Some(path) = &args.control {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// `tapcred-vpcd-card control PATH COMMAND…`: send one control line, print the answer.
fn control_client(path: &str, command: &str) -> Result<(), String> {
    let mut conn = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("connect {path}: {e}"))?;
    writeln!(conn, "{command}").map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(conn)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    println!("{}", line.trim_end());
    if line.starts_with("ok") {
        Ok(())
    } else {
        Err(line.trim_end().to_string())
    }
}

pub fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("control") {
        let result = match argv.get(2) {
            Some(path) if argv.len() > 3 => control_client(path, &argv[3..].join(" ")),
            _ => Err("usage: tapcred-vpcd-card control SOCKET COMMAND [ARG]".to_string()),
        };
        if let Err(e) = result {
            eprintln!("tapcred-vpcd-card: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = run() {
        eprintln!("tapcred-vpcd-card: {e}");
        std::process::exit(1);
    }
}
