//! B7: cold calls with the code from the virtual YubiKey through pcscd (single and 32 in
//! parallel), counted on the card.

use crate::prelude::*;

/// B7: 32 parallel OATH calls against a fresh virtual key through pcscd.
pub(crate) fn bench_b_oath(rep: &mut Report, work: &Path, stack: &mut StackA) {
    // Swap the section-A card for one whose accounts are named by mfa_serial.
    if let Some(card) = stack.card.take() {
        let _ = card.remove();
    }
    let mut cfg = VykConfig::new().serial(CARD_SERIAL);
    for t in oath_tags().iter().chain(&peer_tags()) {
        cfg = cfg.account(Account::totp_base32(&serial_arn(t), DEMO_SEED).expect("seed"));
    }
    let card = match stack.stack.insert(0, VirtualYubiKey::new(cfg)) {
        Ok(c) => c,
        Err(e) => {
            rep.skip(
                "B7",
                "parallel calls with the OATH token",
                &format!("insert card: {e}"),
            );
            return;
        }
    };
    let double = match StsDouble::start(double_config()) {
        Ok(d) => d,
        Err(e) => {
            rep.skip("B7", "parallel calls with the OATH token", &e);
            return;
        }
    };
    let env = Env {
        tapcred: release_bin("tapcred"),
        home: work.join("home-b"),
        config: work.join("aws-config"),
        endpoint: double.endpoint(),
    };
    let vyk = card.vyk().clone();
    let reads = |h: &[ApduRecord]| h.iter().filter(|r| r.ins == 0xA2).count();
    let lists = |h: &[ApduRecord]| h.iter().filter(|r| r.ins == 0xA4 && r.p1 != 0x04).count();
    // B7a, interleaved with the peer chain (P1): what a user of ykman + the AWS CLI runs for
    // the same role on the same key and the same STS double.
    let reader = card.reader_name();
    let ykman = ykman_path();
    let have_peer = ykman.is_file() && Path::new(AWS_CLI).is_file();
    if !have_peer {
        rep.skip(
            "P1",
            "peer chain: ykman oath accounts code + aws sts assume-role",
            &format!("needs {} and {AWS_CLI}", ykman.display()),
        );
    }
    let peer_home = work.join("home-peer");
    let _ = std::fs::create_dir_all(peer_home.join(".config"));
    let mut one = Samples::default();
    let mut peer = Samples::default();
    let mut peer_apdus = None;
    for i in 0..M_OATH {
        for tap_first in if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            avoid_window_end(5);
            vyk.clear_history();
            if tap_first {
                let cache = work.join(format!("cache-oath-one-{i}"));
                match ok_stdout(
                    run_timed(
                        &mut env.cmd(
                            &cache,
                            &["credential-process", "--profile", &format!("oath-{i:02}")],
                            false,
                        ),
                        Duration::from_secs(90),
                    ),
                    "oath cold call",
                ) {
                    Ok((d, out)) if access_key(&out).is_some() => {
                        one.push(d);
                        if i == 0 {
                            rep.fact(
                                "B7",
                                format!(
                                    "one cold OATH `credential-process` (one key, no serial configured): {} code read(s) (CALCULATE) and {} CALCULATE_ALL on the card; {}",
                                    reads(&vyk.history()),
                                    lists(&vyk.history()),
                                    apdu_summary(&vyk.history())
                                ),
                            );
                        }
                    }
                    Ok(_) => rep.notes.push("B7a: no AccessKeyId in output".into()),
                    Err(e) => rep.notes.push(format!("B7: {e}")),
                }
            } else if have_peer {
                let tag = format!("peer-{i:02}");
                match peer_chain(&ykman, &reader, &peer_home, &env, &tag) {
                    Ok(d) => {
                        peer.push(d);
                        peer_apdus.get_or_insert_with(|| apdu_summary(&vyk.history()));
                    }
                    Err(e) => rep.notes.push(format!("P1: {e}")),
                }
            }
        }
    }
    rep.row(
        "B7a",
        "one `credential-process` on an empty cache, code from the virtual YubiKey via pcscd (+ GetSessionToken + AssumeRole on loopback)",
        &one,
        "1.00× (reference for B7b and P1)",
    );
    if have_peer {
        rep.row(
            "P1",
            "peer chain for the same role: `ykman oath accounts code --single` then `aws sts assume-role --serial-number … --token-code …` (same key, pcscd and STS double)",
            &peer,
            &format!("{} of B7a", ratio(peer.median(), one.median())),
        );
        if let Some(a) = peer_apdus {
            rep.fact("P1", format!("ykman's part of the peer chain: {a}"));
        }
    }
    let par_n = env_usize("TAPCRED_BENCH_PAR", 32);
    let mut par = Samples::default();
    let mut failed_batches = 0;
    for i in 0..M_OATH {
        avoid_window_end(8);
        vyk.clear_history();
        double.reset_stats();
        let cache = work.join(format!("cache-oath-par-{i}"));
        let p = run_parallel(
            &env,
            &cache,
            &format!("oath-{:02}", M_OATH + i),
            par_n,
            false,
        );
        let st = double.stats();
        let h = vyk.history();
        rep.fact(
            "B7b",
            format!(
                "batch {i}: {} ok / {} failed, {} distinct AccessKeyIds, code reads on the card {} (CALCULATE) + {} CALCULATE_ALL, APDUs {}, STS requests {}, TokenCodes {}{}",
                p.ok,
                p.failed,
                p.distinct_keys,
                reads(&h),
                lists(&h),
                h.len(),
                st.requests,
                st.token_codes.len(),
                p.errors_text()
            ),
        );
        par.push(p.wall);
        failed_batches += usize::from(p.failed > 0);
    }
    rep.row(
        "B7b",
        &format!("{par_n} parallel `credential-process` on an empty cache, OATH via pcscd"),
        &par,
        &format!(
            "{} of one call (B7a){}",
            ratio(par.median(), one.median()),
            failed_note(failed_batches)
        ),
    );
    drop(card);
}

/// The peer chain, timed as a user runs it: `ykman` prints the code, then the AWS CLI calls
/// AssumeRole with it (MFA on AssumeRole, one STS call). Sum of both processes' wall times.
fn peer_chain(
    ykman: &Path,
    reader: &str,
    home: &Path,
    env: &Env,
    tag: &str,
) -> Result<Duration, String> {
    let serial = serial_arn(tag);
    let mut yk = Command::new(ykman);
    yk.args([
        "--reader", reader, "oath", "accounts", "code", "--single", &serial,
    ])
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .env("HOME", home)
    .env("XDG_CONFIG_HOME", home.join(".config"))
    .env("XDG_DATA_HOME", home.join(".local/share"));
    let t0 = now_unix();
    let (d1, out) = ok_stdout(run_timed(&mut yk, Duration::from_secs(30)), "ykman")?;
    let code = out.trim().to_owned();
    let good: Vec<String> = [t0, now_unix()]
        .iter()
        .filter_map(|t| totp::code_at(DEMO_SEED, *t).ok())
        .collect();
    if !good.contains(&code) {
        return Err(format!("ykman printed {code:?}, not the RFC 6238 code"));
    }
    let mut aws = Command::new(AWS_CLI);
    aws.args([
        "sts",
        "assume-role",
        "--role-arn",
        &format!("arn:aws:iam::{ACCT}:role/toolkit-role"),
        "--role-session-name",
        "peer",
        "--serial-number",
        &serial,
        "--token-code",
        &code,
        "--endpoint-url",
        &env.endpoint,
        "--region",
        "us-east-1",
        "--profile",
        "toolkit-user",
        "--output",
        "json",
    ])
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .env("HOME", home)
    .env("AWS_CONFIG_FILE", home.join("no-config"))
    .env(
        "AWS_SHARED_CREDENTIALS_FILE",
        root().join("fixtures/aws/design/credentials"),
    );
    let (d2, out) = ok_stdout(
        run_timed(&mut aws, Duration::from_secs(60)),
        "aws sts assume-role",
    )?;
    if !out.contains("\"AccessKeyId\"") {
        return Err("aws sts assume-role printed no AccessKeyId".into());
    }
    Ok(d1 + d2)
}
