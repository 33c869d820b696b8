//! The virtual YubiKey through a real pcscd (vpcd in a private network namespace),
//! driven by the `pcsc` crate as a PC/SC client would. Skips loudly without root/pcscd/
//! vpcd unless CI=true.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

use std::ffi::CString;
use std::time::{Duration, Instant};

use tapcred_testkit::pcsc_stack::{PcscStack, reader_name, wait_card_present};
use tapcred_testkit::virtual_yubikey::{Account, Fault, OATH_AID, VirtualYubiKey, VykConfig};

const RFC_KEY: &[u8] = b"12345678901234567890";

fn connect(ctx: &pcsc::Context, slot: u8) -> pcsc::Card {
    let name = CString::new(reader_name(slot)).unwrap();
    ctx.connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
        .expect("connect to the virtual YubiKey")
}

fn tx(card: &pcsc::Card, apdu: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 4096];
    card.transmit(apdu, &mut buf).expect("transmit").to_vec()
}

fn select_oath(card: &pcsc::Card) -> Vec<u8> {
    let mut apdu = vec![0x00, 0xA4, 0x04, 0x00, OATH_AID.len() as u8];
    apdu.extend_from_slice(&OATH_AID);
    tx(card, &apdu)
}

fn calculate(card: &pcsc::Card, name: &str, t: u64) -> Vec<u8> {
    let mut data = vec![0x71, name.len() as u8];
    data.extend_from_slice(name.as_bytes());
    data.extend_from_slice(&[0x74, 0x08]);
    data.extend_from_slice(&(t / 30).to_be_bytes());
    let mut apdu = vec![0x00, 0xA2, 0x00, 0x01, data.len() as u8];
    apdu.extend_from_slice(&data);
    tx(card, &apdu)
}

fn code(reply: &[u8]) -> String {
    assert_eq!(
        &reply[reply.len() - 2..],
        &[0x90, 0x00],
        "reply {reply:02x?}"
    );
    assert_eq!(reply[0], 0x76);
    let digits = reply[2] as u32;
    let v = u32::from_be_bytes(reply[3..7].try_into().unwrap()) & 0x7FFF_FFFF;
    format!("{:0w$}", v % 10u32.pow(digits), w = digits as usize)
}

#[test]
fn card_through_real_pcscd() {
    let t0 = Instant::now();
    let Some(mut stack) = PcscStack::start_or_skip("card_through_real_pcscd") else {
        return;
    };
    let card = VirtualYubiKey::new(
        VykConfig::new()
            .serial(4242)
            .touch_timeout(Duration::from_secs(5))
            .account(Account::totp("rfc", RFC_KEY).digits(8))
            .account(Account::totp("touch", RFC_KEY).touch(true)),
    );
    eprintln!("pcscd ready after {:?}", t0.elapsed());
    let handle = stack.insert(0, card).expect("insert card");
    eprintln!("card present after {:?}", t0.elapsed());
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    let readers: Vec<String> = ctx
        .list_readers_owned()
        .unwrap()
        .into_iter()
        .map(|r| r.into_string().unwrap())
        .collect();
    assert!(readers.contains(&reader_name(0)), "{readers:?}");
    assert!(readers.contains(&reader_name(1)), "{readers:?}");

    let pc = connect(&ctx, 0);
    let (_, atr) = {
        let mut names = [0u8; 256];
        let mut atr = [0u8; 64];
        let st = pc.status2(&mut names, &mut atr).unwrap();
        (st.reader_names().count(), st.atr().to_vec())
    };
    assert_eq!(atr, handle.vyk().atr());
    assert_eq!(&select_oath(&pc)[..2], &[0x79, 0x03]);
    assert_eq!(code(&calculate(&pc, "rfc", 59)), "94287082");
    assert_eq!(code(&calculate(&pc, "rfc", 2_000_000_000)), "69279037");

    // Latency per APDU through pcscd + vpcd (TCP_QUICKACK matters here).
    let n = 50;
    let start = Instant::now();
    for _ in 0..n {
        calculate(&pc, "rfc", 59);
    }
    let per = start.elapsed() / n;
    eprintln!("pcscd+vpcd round trip: {per:?} per CALCULATE");
    assert!(
        per < Duration::from_millis(30),
        "too slow: {per:?} per APDU"
    );

    // Touch: the APDU blocks in pcscd until the button is pressed.
    let button = handle.button();
    let presser = std::thread::spawn(move || button.press_when_requested(Duration::from_secs(5)));
    assert_eq!(code(&calculate(&pc, "touch", 59)), "287082");
    assert!(presser.join().unwrap());
    drop(pc);

    // Removal and re-insertion.
    let t1 = Instant::now();
    let card = handle.remove();
    eprintln!("removal seen after {:?}", t1.elapsed());
    wait_card_present(&reader_name(0), false, Duration::from_secs(1)).unwrap();
    let handle = stack.insert(0, card).expect("re-insert");
    eprintln!("re-inserted after {:?}", t1.elapsed());
    let pc = connect(&ctx, 0);
    select_oath(&pc);
    assert_eq!(code(&calculate(&pc, "rfc", 59)), "94287082");
    // A second card in slot 1 at the same time.
    let other = stack
        .insert(
            1,
            VirtualYubiKey::new(
                VykConfig::new()
                    .serial(99)
                    .account(Account::totp("x", RFC_KEY)),
            ),
        )
        .expect("slot 1");
    let pc1 = connect(&ctx, 1);
    select_oath(&pc1);
    assert_eq!(code(&calculate(&pc1, "x", 59)), "287082");
    drop(pc1);
    drop(other);

    // Fault: the card is pulled out in the middle of a session.
    handle.vyk().inject(Fault::Remove);
    let mut buf = [0u8; 512];
    let r = pc.transmit(&[0x00, 0xA1, 0x00, 0x00, 0x00], &mut buf);
    // vpcd answers an APDU whose card vanished with an empty reply (no status word).
    assert!(
        r.as_ref().map_or(true, |d| d.len() < 2),
        "transmit to a removed card must fail, got {r:?}"
    );
    wait_card_present(&reader_name(0), false, Duration::from_secs(5)).unwrap();
}

#[test]
fn stack_stops_cleanly() {
    let Some(stack) = PcscStack::start_or_skip("stack_stops_cleanly") else {
        return;
    };
    let pid = stack.pcscd_pid();
    let t = Instant::now();
    drop(stack);
    eprintln!("stack stopped in {:?}", t.elapsed());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}
