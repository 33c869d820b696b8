//! CTAPHID framing cases python-fido2 never provokes: other channels while one is busy,
//! sequence errors, partial-message timeouts, unknown channels, CANCEL, touch timeouts,
//! keep-alive cadence, removal, silence.

use std::thread::sleep;
use std::time::{Duration, Instant};

use super::*;
use crate::virtual_fido2::status;

const TOUCH_TIMEOUT: Duration = Duration::from_millis(600);

fn key() -> FidoInterface {
    FidoInterface::new(VirtualAuthenticator::new(), TOUCH_TIMEOUT)
}

fn init_packet(cid: u32, command: u8, len: usize, data: &[u8]) -> Vec<u8> {
    let mut p = cid.to_be_bytes().to_vec();
    p.push(command);
    p.extend(u16::try_from(len).unwrap().to_be_bytes());
    p.extend(data);
    p.resize(REPORT_SIZE, 0);
    p
}

fn cont_packet(cid: u32, seq: u8, data: &[u8]) -> Vec<u8> {
    let mut p = cid.to_be_bytes().to_vec();
    p.push(seq);
    p.extend(data);
    p.resize(REPORT_SIZE, 0);
    p
}

/// The next report, waiting up to 2 s for one.
fn next(key: &mut FidoInterface) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(r) = key.read_input() {
            assert_eq!(r.len(), REPORT_SIZE);
            return r;
        }
        assert!(Instant::now() < deadline, "no report within 2 s");
        sleep(Duration::from_millis(2));
    }
}

/// (cid, command, payload) of the next whole message.
fn message(key: &mut FidoInterface) -> (u32, u8, Vec<u8>) {
    let first = next(key);
    let cid = u32::from_be_bytes(first[..4].try_into().unwrap());
    let command = first[4];
    let len = usize::from(u16::from_be_bytes([first[5], first[6]]));
    let mut data = first[7..].to_vec();
    let mut seq = 0;
    while data.len() < len {
        let p = next(key);
        assert_eq!(u32::from_be_bytes(p[..4].try_into().unwrap()), cid);
        assert_eq!(p[4], seq);
        seq += 1;
        data.extend(&p[5..]);
    }
    data.truncate(len);
    (cid, command, data)
}

fn open_channel(key: &mut FidoInterface) -> u32 {
    let nonce = *b"\x01\x02\x03\x04\x05\x06\x07\x08";
    key.write_output(&init_packet(BROADCAST_CID, cmd::INIT, 8, &nonce));
    let (cid, command, data) = message(key);
    assert_eq!((cid, command), (BROADCAST_CID, cmd::INIT));
    assert_eq!(data.len(), 17);
    assert_eq!(data[..8], nonce);
    u32::from_be_bytes(data[8..12].try_into().unwrap())
}

fn error_of(key: &mut FidoInterface, expect_cid: u32) -> u8 {
    let (cid, command, data) = message(key);
    assert_eq!((cid, command), (expect_cid, cmd::ERROR), "{data:?}");
    data[0]
}

/// A getAssertion the key must wait on: a credential exists, `up` is the default.
fn assertion_request(key: &FidoInterface) -> Vec<u8> {
    let model = key.control().model().clone();
    model.touch();
    let id = model.make_credential("rp.example", None).unwrap();
    let mut body = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Map(vec![
            (1.into(), "rp.example".into()),
            (2.into(), ciborium::Value::Bytes(vec![7; 32])),
            (
                3.into(),
                ciborium::Value::Array(vec![ciborium::Value::Map(vec![
                    ("id".into(), ciborium::Value::Bytes(id)),
                    ("type".into(), "public-key".into()),
                ])]),
            ),
        ]),
        &mut body,
    )
    .unwrap();
    [vec![ctap2::command::GET_ASSERTION], body].concat()
}

fn send_cbor(key: &mut FidoInterface, cid: u32, request: &[u8]) {
    assert!(request.len() <= REPORT_SIZE - 7 + REPORT_SIZE - 5);
    let first = request.len().min(REPORT_SIZE - 7);
    key.write_output(&init_packet(
        cid,
        cmd::CBOR,
        request.len(),
        &request[..first],
    ));
    if request.len() > first {
        key.write_output(&cont_packet(cid, 0, &request[first..]));
    }
}

#[test]
fn init_gives_each_client_its_own_channel_and_echoes_the_nonce() {
    let mut k = key();
    let a = open_channel(&mut k);
    let b = open_channel(&mut k);
    assert_ne!(a, b);
    assert!(a != 0 && a != BROADCAST_CID);
}

#[test]
fn ping_echoes_a_message_across_continuation_packets() {
    let mut k = key();
    let cid = open_channel(&mut k);
    let msg: Vec<u8> = (0..200u8).collect();
    k.write_output(&init_packet(cid, cmd::PING, msg.len(), &msg[..57]));
    k.write_output(&cont_packet(cid, 0, &msg[57..116]));
    k.write_output(&cont_packet(cid, 1, &msg[116..175]));
    k.write_output(&cont_packet(cid, 2, &msg[175..]));
    assert_eq!(message(&mut k), (cid, cmd::PING, msg));
}

#[test]
fn unknown_zero_and_broadcast_channels_are_refused_for_anything_but_init() {
    let mut k = key();
    let cid = open_channel(&mut k);
    for bad in [cid + 1, 0, BROADCAST_CID] {
        k.write_output(&init_packet(bad, cmd::PING, 1, &[1]));
        assert_eq!(error_of(&mut k, bad), err::INVALID_CHANNEL);
    }
}

#[test]
fn another_channel_is_busy_while_a_message_is_half_sent_and_it_times_out() {
    let mut k = key();
    let a = open_channel(&mut k);
    let b = open_channel(&mut k);
    k.write_output(&init_packet(a, cmd::PING, 100, &[9; 57]));
    k.write_output(&init_packet(b, cmd::PING, 1, &[1]));
    assert_eq!(error_of(&mut k, b), err::CHANNEL_BUSY);
    // The half-sent message expires; then b is served.
    let start = Instant::now();
    assert_eq!(error_of(&mut k, a), err::MSG_TIMEOUT);
    assert!(start.elapsed() + Duration::from_millis(50) >= MESSAGE_TIMEOUT);
    k.write_output(&init_packet(b, cmd::PING, 1, &[1]));
    assert_eq!(message(&mut k), (b, cmd::PING, vec![1]));
}

#[test]
fn a_wrong_sequence_number_or_a_new_init_packet_mid_message_is_invalid_seq() {
    let mut k = key();
    let cid = open_channel(&mut k);
    k.write_output(&init_packet(cid, cmd::PING, 100, &[9; 57]));
    k.write_output(&cont_packet(cid, 1, &[9; 43]));
    assert_eq!(error_of(&mut k, cid), err::INVALID_SEQ);
    k.write_output(&init_packet(cid, cmd::PING, 100, &[9; 57]));
    k.write_output(&init_packet(cid, cmd::PING, 1, &[1]));
    assert_eq!(error_of(&mut k, cid), err::INVALID_SEQ);
    // The channel works again afterwards.
    k.write_output(&init_packet(cid, cmd::PING, 1, &[1]));
    assert_eq!(message(&mut k), (cid, cmd::PING, vec![1]));
}

#[test]
fn too_long_messages_msg_lock_and_unknown_commands_are_refused() {
    let mut k = key();
    let cid = open_channel(&mut k);
    k.write_output(&init_packet(cid, cmd::PING, MAX_MESSAGE + 1, &[0; 57]));
    assert_eq!(error_of(&mut k, cid), err::INVALID_LEN);
    for command in [cmd::MSG, cmd::LOCK, 0xC7] {
        k.write_output(&init_packet(cid, command, 1, &[0]));
        assert_eq!(error_of(&mut k, cid), err::INVALID_CMD, "{command:#x}");
    }
    k.write_output(&init_packet(cid, cmd::CBOR, 0, &[]));
    assert_eq!(error_of(&mut k, cid), err::INVALID_LEN);
}

#[test]
fn a_request_waiting_for_a_touch_sends_keepalives_every_100ms_and_busies_other_channels() {
    let mut k = key();
    let a = open_channel(&mut k);
    let b = open_channel(&mut k);
    let request = assertion_request(&k);
    send_cbor(&mut k, a, &request);
    let start = Instant::now();
    let mut keepalives = 0;
    while start.elapsed() < Duration::from_millis(350) {
        let (cid, command, data) = message(&mut k);
        assert_eq!(
            (cid, command, data),
            (a, cmd::KEEPALIVE, vec![keepalive::UP_NEEDED])
        );
        keepalives += 1;
    }
    assert!(
        (3..=5).contains(&keepalives),
        "{keepalives} keep-alives in 350 ms"
    );
    k.write_output(&init_packet(b, cmd::PING, 1, &[1]));
    assert_eq!(error_of(&mut k, b), err::CHANNEL_BUSY);
    k.control().touch();
    let (cid, command, data) = loop {
        let m = message(&mut k);
        if m.1 != cmd::KEEPALIVE {
            break m;
        }
    };
    assert_eq!(
        (cid, command, data[0]),
        (a, cmd::CBOR, 0),
        "assertion after the touch"
    );
}

#[test]
fn no_touch_in_time_is_user_action_timeout() {
    let mut k = key();
    let cid = open_channel(&mut k);
    let request = assertion_request(&k);
    let start = Instant::now();
    send_cbor(&mut k, cid, &request);
    let answer = loop {
        let m = message(&mut k);
        if m.1 != cmd::KEEPALIVE {
            break m;
        }
    };
    assert_eq!(answer, (cid, cmd::CBOR, vec![status::USER_ACTION_TIMEOUT]));
    assert!(start.elapsed() >= TOUCH_TIMEOUT);
}

#[test]
fn cancel_ends_the_waiting_request_with_keepalive_cancel() {
    let mut k = key();
    let cid = open_channel(&mut k);
    let request = assertion_request(&k);
    send_cbor(&mut k, cid, &request);
    assert_eq!(message(&mut k).1, cmd::KEEPALIVE);
    k.write_output(&init_packet(cid, cmd::CANCEL, 0, &[]));
    let answer = loop {
        let m = message(&mut k);
        if m.1 != cmd::KEEPALIVE {
            break m;
        }
    };
    assert_eq!(
        answer,
        (cid, cmd::CBOR, vec![ctap2::more_status::KEEPALIVE_CANCEL])
    );
    // The touch was not consumed by the cancelled request: a later one still needs it.
    k.control().touch();
    assert!(k.control().model().touch_pending());
}

#[test]
fn init_on_the_busy_channel_resynchronises_it() {
    let mut k = key();
    let cid = open_channel(&mut k);
    let request = assertion_request(&k);
    send_cbor(&mut k, cid, &request);
    assert_eq!(message(&mut k).1, cmd::KEEPALIVE);
    k.write_output(&init_packet(cid, cmd::INIT, 8, &[5; 8]));
    let (c, command, data) = message(&mut k);
    assert_eq!((c, command), (cid, cmd::INIT));
    assert_eq!(data[8..12], cid.to_be_bytes());
    k.write_output(&init_packet(cid, cmd::PING, 1, &[1]));
    assert_eq!(message(&mut k), (cid, cmd::PING, vec![1]));
}

#[test]
fn a_removed_key_answers_nothing_and_says_so() {
    let mut k = key();
    let cid = open_channel(&mut k);
    let request = assertion_request(&k);
    send_cbor(&mut k, cid, &request);
    assert_eq!(message(&mut k).1, cmd::KEEPALIVE);
    k.control().remove();
    assert!(!k.present());
    sleep(Duration::from_millis(250));
    assert_eq!(k.read_input(), None);
}

#[test]
fn a_silent_key_takes_requests_and_never_answers() {
    let mut k = key();
    let cid = open_channel(&mut k);
    k.control().set_silent(true);
    k.write_output(&init_packet(cid, cmd::PING, 1, &[1]));
    sleep(Duration::from_millis(50));
    assert_eq!(k.read_input(), None);
    k.control().set_silent(false);
    k.write_output(&init_packet(cid, cmd::PING, 1, &[2]));
    assert_eq!(message(&mut k), (cid, cmd::PING, vec![2]));
}

#[test]
fn wink_answers_empty_and_is_counted() {
    let mut k = key();
    let cid = open_channel(&mut k);
    k.write_output(&init_packet(cid, cmd::WINK, 0, &[]));
    assert_eq!(message(&mut k), (cid, cmd::WINK, vec![]));
    assert_eq!(k.control().winks(), 1);
}

#[test]
fn the_button_is_taken_only_while_a_request_waits_for_it() {
    let mut k = key();
    let cid = open_channel(&mut k);
    let request = assertion_request(&k);
    assert!(!k.control().press_if_waiting(), "nothing waits yet");
    assert!(!k.control().model().touch_pending());
    send_cbor(&mut k, cid, &request);
    assert_eq!(message(&mut k).1, cmd::KEEPALIVE);
    assert!(k.control().waiting_for_touch());
    assert!(k.control().press_if_waiting());
    let answer = loop {
        let m = message(&mut k);
        if m.1 != cmd::KEEPALIVE {
            break m;
        }
    };
    assert_eq!((answer.0, answer.1, answer.2[0]), (cid, cmd::CBOR, 0));
    assert!(!k.control().waiting_for_touch());
}
