//! An independent STS peer: the real binary against moto's server, asserting through moto's
//! request recorder that the TokenCode tapcred sent is the seed's TOTP at that time.

mod common;
use common::{Home, totp_sha1};
use tapcred_testkit::moto::MotoServer;
use tapcred_testkit::sts_double::design;

#[test]
fn token_code_sent_to_moto_is_the_seed_totp() {
    let Some(moto) =
        MotoServer::start_or_skip("moto_peer::token_code_sent_to_moto_is_the_seed_totp")
    else {
        return;
    };
    let mut h = Home::design();
    h.set("AWS_ENDPOINT_URL_STS", &moto.endpoint())
        .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
    let before = tapcred::clock::now_unix();
    let out = h.run(&["credential-process", "--profile", "mfa", "--no-cache"]);
    let after = tapcred::clock::now_unix();
    out.ok();
    assert!(
        out.json()["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("ASIA")
    );

    let calls = moto.recorded_sts_calls();
    let with_code: Vec<_> = calls
        .iter()
        .filter(|c| c.contains_key("TokenCode"))
        .collect();
    assert_eq!(with_code.len(), 1, "exactly one MFA call: {calls:?}");
    let call = with_code[0];
    assert_eq!(call["SerialNumber"], design::MFA_SERIAL);
    let seed = data_encoding::BASE32_NOPAD
        .decode(design::MFA_SEED_BASE32.as_bytes())
        .unwrap();
    let candidates: Vec<String> = (before / 30..=after / 30)
        .map(|s| totp_sha1(&seed, s * 30))
        .collect();
    assert!(
        candidates.contains(&call["TokenCode"]),
        "sent {} but the seed gives {candidates:?}",
        call["TokenCode"]
    );
}
