//! Section A: `tapcred code` vs `ykman oath accounts code` on the same virtual key
//! through a real pcscd, with the APDUs the card received for each.

use crate::prelude::*;

pub(crate) fn ykman_path() -> PathBuf {
    let venv = std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".into());
    Path::new(&venv).join("bin/ykman")
}

pub(crate) struct StackA {
    // Field order: the card goes before pcscd.
    pub(crate) card: Option<pcsc_stack::CardHandle>,
    pub(crate) stack: PcscStack,
}

pub(crate) fn bench_a(rep: &mut Report, work: &Path) -> Option<StackA> {
    if let Err(missing) = pcsc_stack::prerequisites() {
        rep.skip(
            "A",
            "tapcred code vs ykman through pcscd",
            &format!("needs {missing}"),
        );
        return None;
    }
    let mut stack = match PcscStack::start() {
        Ok(s) => s,
        Err(e) => {
            rep.skip(
                "A",
                "tapcred code vs ykman through pcscd",
                &format!("pcscd stack: {e}"),
            );
            return None;
        }
    };
    let accounts = [
        (A_ACCOUNT, A_SEED),
        ("GitHub:alice", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
        (
            "Google:alice@example.com",
            "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U",
        ),
    ];
    let mut cfg = VykConfig::new().serial(CARD_SERIAL);
    for (n, s) in accounts {
        cfg = cfg.account(Account::totp_base32(n, s).expect("valid seed"));
    }
    let card = match stack.insert(0, VirtualYubiKey::new(cfg)) {
        Ok(c) => c,
        Err(e) => {
            rep.skip(
                "A",
                "tapcred code vs ykman through pcscd",
                &format!("insert card: {e}"),
            );
            return None;
        }
    };
    let reader = card.reader_name();
    let tapcred = release_bin("tapcred");
    let serial = CARD_SERIAL.to_string();
    let home = work.join("home-a");
    let _ = std::fs::create_dir_all(home.join(".config"));
    // Timed: one key, no --serial (the common case: 2 APDUs). A1 counts the --serial form.
    let tap_cmd = || {
        let mut c = Command::new(&tapcred);
        c.args(["code", "--account", A_ACCOUNT])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home);
        c
    };
    let ykman = ykman_path();
    let have_ykman = ykman.is_file();
    let yk_cmd = || {
        let mut c = Command::new(&ykman);
        c.args(["--reader", &reader, "oath", "accounts", "code", A_ACCOUNT])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"));
        c
    };
    let expect = |t0: i64, t1: i64| -> Vec<String> {
        [t0, t1]
            .iter()
            .filter_map(|t| totp::code_at(A_SEED, *t).ok())
            .collect()
    };
    let timeout = Duration::from_secs(30);

    // APDUs for one non-touch code, counted by the card itself.
    let vyk = card.vyk().clone();
    vyk.clear_history();
    let mut with_serial = Command::new(&tapcred);
    with_serial
        .args(["code", "--account", A_ACCOUNT, "--serial", &serial])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home);
    match ok_stdout(
        run_timed(&mut with_serial, timeout),
        "tapcred code --serial",
    ) {
        Ok(_) => {
            let h = vyk.history();
            // "After connecting": after the key has been identified (serial read over the
            // management applet, READ_CONFIG), i.e. the OATH applet's part.
            let oath_part = match h.iter().rposition(|r| r.ins == 0x1D) {
                Some(i) => &h[i + 1..],
                None => &h[..],
            };
            rep.fact(
                "A1",
                format!(
                    "`tapcred code --account {A_ACCOUNT} --serial N` (the serial decides: identification first), one non-touch code: {}; OATH part after the serial read: {} APDUs",
                    apdu_summary(&h),
                    oath_part.len()
                ),
            );
        }
        Err(e) => rep.fact("A1", format!("tapcred code failed: {e}")),
    }
    vyk.clear_history();
    if ok_stdout(
        run_timed(&mut tap_cmd(), timeout),
        "tapcred code (no serial)",
    )
    .is_ok()
    {
        rep.fact(
            "A1b",
            format!(
                "`tapcred code --account {A_ACCOUNT}` (no --serial, one key; goal SELECT + CALCULATE_ALL = 2): {}",
                apdu_summary(&vyk.history())
            ),
        );
    }
    if have_ykman {
        vyk.clear_history();
        if ok_stdout(run_timed(&mut yk_cmd(), timeout), "ykman").is_ok() {
            rep.fact(
                "A1c",
                format!(
                    "`ykman --reader … oath accounts code {A_ACCOUNT}` ({} accounts on the key): {}",
                    accounts.len(),
                    apdu_summary(&vyk.history())
                ),
            );
        }
    }
    vyk.clear_history();

    // Timing, interleaved (order alternates each round), after one warm-up each.
    let n = env_usize("TAPCRED_BENCH_A_N", 21);
    let mut tap = Samples::default();
    let mut yk = Samples::default();
    let mut yk_start = Samples::default();
    let mut errors = Vec::new();
    let _ = run_timed(&mut tap_cmd(), timeout);
    if have_ykman {
        let _ = run_timed(&mut yk_cmd(), timeout);
    }
    for i in 0..n {
        let order: &[bool] = if i % 2 == 0 {
            &[true, false]
        } else {
            &[false, true]
        };
        for &is_tap in order {
            if !is_tap && !have_ykman {
                continue;
            }
            let t0 = now_unix();
            let res = if is_tap {
                ok_stdout(run_timed(&mut tap_cmd(), timeout), "tapcred code")
            } else {
                ok_stdout(run_timed(&mut yk_cmd(), timeout), "ykman")
            };
            let t1 = now_unix();
            match res {
                Ok((d, out)) => {
                    let good = expect(t0, t1);
                    // tapcred prints the code; ykman prints "NAME  CODE".
                    let code = out.split_whitespace().last().unwrap_or("").to_string();
                    if good.contains(&code) {
                        if is_tap { tap.push(d) } else { yk.push(d) }
                    } else {
                        errors.push(format!(
                            "{} printed a wrong code",
                            if is_tap { "tapcred" } else { "ykman" }
                        ));
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        // ykman's start-up alone (Python interpreter and imports, no PC/SC), same round.
        if have_ykman {
            let c = yk_cmd();
            let mut v = Command::new(c.get_program());
            v.arg("--version").env_clear();
            for (k, val) in c.get_envs() {
                if let Some(val) = val {
                    v.env(k, val);
                }
            }
            if let Ok((d, _)) = ok_stdout(run_timed(&mut v, timeout), "ykman --version") {
                yk_start.push(d);
            }
        }
    }
    rep.row(
        "A2",
        "`tapcred code --account NAME` (one key, no serial; pcscd, virtual key; APDUs: A1b)",
        &tap,
        "1.00× (baseline)",
    );
    if have_ykman {
        rep.row(
            "A3",
            "`ykman --reader \"…\" oath accounts code NAME` (same key, same pcscd; APDUs: A1c)",
            &yk,
            &format!("{} of tapcred", ratio(yk.median(), tap.median())),
        );
        rep.row(
            "A4",
            "`ykman --version` (ykman start-up only: no PC/SC, no key)",
            &yk_start,
            &format!("{} of A3", ratio(yk_start.median(), yk.median())),
        );
    } else {
        rep.skip(
            "A3",
            "ykman oath accounts code",
            &format!("no ykman at {}", ykman.display()),
        );
    }
    for e in errors.iter().take(3) {
        rep.notes.push(format!("A: sample dropped: {e}"));
    }
    rep.notes.push(format!(
        "A: one real pcscd (network namespace) serving the virtual YubiKey (serial {CARD_SERIAL}, firmware default, {} TOTP accounts, no touch, no password) on reader \"{reader}\"; every code checked against RFC 6238.",
        accounts.len()
    ));
    Some(StackA {
        card: Some(card),
        stack,
    })
}
