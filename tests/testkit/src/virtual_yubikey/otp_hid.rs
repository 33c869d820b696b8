//! The virtual key's OTP HID (keyboard) interface at the feature-report level
//! (yubikey-protocols.md part B): the same OTP slots, serial, button and touch timeout as
//! the CCID side, so a slot answers the same HMAC over both links.
//!
//! What it does, as the reference describes the real key:
//! - a read (GET_REPORT) while idle answers the status: `00 | firmware(3) | pgmSeq |
//!   touchLevel(2, LE) | 00` (B.2);
//! - a write (SET_REPORT) is one chunk `7 bytes || 0x80 | seq` of a 70-byte frame (B.4);
//!   chunk 0 starts a frame, chunk 9 ends it; sequence numbers must increase (all-zero
//!   chunks may be skipped); `0x8F` in byte 7 resets the interface to idle;
//! - after each write the next read shows the write flag 0x80 once (busy): a write while
//!   busy is dropped, as a key still handling the last chunk would, so a host that does not
//!   wait for the flag to clear sends a broken frame;
//! - a complete frame whose CRC16 over the payload does not match, or an unknown command,
//!   is rejected: reads go back to the plain status (byte 7 = 0) with pgmSeq unchanged;
//! - HMAC-SHA1 (slot command 0x30 / 0x38) of a touch slot first answers `0x20 | seconds
//!   left` until the button is pressed (then the answer) or the touch timeout passes
//!   (then the plain status: no data);
//! - the device info (command 0x13, page in the payload's first byte) is the management
//!   applet's, as ykman reads it over HID;
//! - slot writes (commands 0x01 / 0x03: a 52-byte configuration, CRC-checked, then the
//!   current access code): all zeros deletes the slot; an HMAC-SHA1 challenge-response
//!   configuration (`CHAL_RESP` ticket flag, `CHAL_HMAC` config flags; the 20-byte key as
//!   16 key bytes then the uid's first 4; `CHAL_BTN_TRIG` touch, `HMAC_LT64`) programs it;
//!   any other kind of configuration is rejected. A write answers with the status, its
//!   programming sequence counted up (0 once both slots are empty);
//! - an answer goes out as 7-byte chunks `data || 0x40 | seq` (data = response + the
//!   ones-complemented CRC16, LE), one per read, then `0x40` with sequence 0 until the host
//!   writes the reset report.
//!
//! Strictness where the reference is silent: a chunk with a sequence number that does not
//! increase, or above 9, abandons the frame.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Shared, lock};

/// CRC16 as the key computes it (B.5): init 0xFFFF, reflected polynomial 0x8408.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// A slot configuration as written over HID: `Some(None)` deletes the slot, `Some(Some)`
/// is an HMAC-SHA1 challenge-response slot, `None` is rejected (a bad CRC, another kind).
/// Layout: fixed(16) uid(6) key(16) accCode(6) fixedSize ext tkt cfg rfu(2) crc(2).
fn slot_config(c: &[u8]) -> Option<Option<super::OtpSlot>> {
    const CHAL_RESP: u8 = 0x40;
    const CHAL_HMAC: u8 = 0x22;
    const HMAC_LT64: u8 = 0x04;
    const CHAL_BTN_TRIG: u8 = 0x08;
    if c.iter().all(|&b| b == 0) {
        return Some(None);
    }
    if crc16(&c[..50]) != !u16::from_le_bytes([c[50], c[51]]) {
        return None;
    }
    let (tkt, cfg) = (c[46], c[47]);
    if tkt & CHAL_RESP == 0 || cfg & CHAL_HMAC != CHAL_HMAC {
        return None;
    }
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(&c[22..38]);
    key[16..].copy_from_slice(&c[16..20]);
    let mut slot = super::OtpSlot::hmac_sha1(key, cfg & CHAL_BTN_TRIG != 0);
    slot.lt64 = cfg & HMAC_LT64 != 0;
    Some(Some(slot))
}

enum Phase {
    Idle,
    /// Collecting a frame; `last` is the sequence number of the last chunk taken.
    Receiving {
        frame: [u8; 70],
        last: u8,
    },
    /// An HMAC challenge waiting for the button since `since`.
    Touch {
        slot: usize,
        challenge: [u8; 64],
        since: Instant,
    },
    /// Sending `data` (a multiple of 7 bytes); `next` chunks already read.
    Responding {
        data: Vec<u8>,
        next: usize,
    },
}

/// The OTP HID interface of one virtual key. Made with [`super::VirtualYubiKey::otp_hid`];
/// several may exist, they share the key (as one USB device has one OTP interface, tests
/// should use one at a time).
pub struct VirtualOtpHid {
    shared: Arc<Shared>,
    phase: Phase,
    busy: bool,
    writes: Vec<[u8; 8]>,
    dropped_writes: usize,
    corrupt_next: bool,
}

impl VirtualOtpHid {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        VirtualOtpHid {
            shared,
            phase: Phase::Idle,
            busy: false,
            writes: Vec::new(),
            dropped_writes: 0,
            corrupt_next: false,
        }
    }

    /// Every report written so far (the host's chunks and resets), in order.
    pub fn writes(&self) -> &[[u8; 8]] {
        &self.writes
    }

    /// Writes dropped because the host did not wait for the busy flag to clear.
    pub fn dropped_writes(&self) -> usize {
        self.dropped_writes
    }

    /// Flip a bit in the next answer's first chunk (its CRC then fails).
    pub fn corrupt_next_answer(&mut self) {
        self.corrupt_next = true;
    }

    fn removed(&self) -> bool {
        self.shared.removed.load(Ordering::SeqCst)
    }

    fn status(&self, flags: u8) -> [u8; 8] {
        let st = lock(&self.shared.state);
        let s = st.otp_status();
        [0, s[0], s[1], s[2], s[3], s[4], s[5], flags]
    }

    /// GET_REPORT. `None` when the key has been pulled out.
    pub fn get_feature(&mut self) -> Option<[u8; 8]> {
        if self.removed() {
            return None;
        }
        if std::mem::take(&mut self.busy) {
            return Some(self.status(0x80));
        }
        if let Phase::Touch {
            slot,
            challenge,
            since,
        } = &self.phase
        {
            let (slot, challenge, since) = (*slot, *challenge, *since);
            match self.touch_poll(since) {
                None => {
                    let left = lock(&self.shared.touch)
                        .timeout
                        .saturating_sub(since.elapsed());
                    let secs = left.as_secs().min(0x1F) as u8;
                    return Some(self.status(0x20 | secs));
                }
                Some(true) => self.answer_hmac(slot, &challenge),
                Some(false) => self.phase = Phase::Idle,
            }
        }
        match &mut self.phase {
            Phase::Responding { data, next } => {
                let chunks = data.len() / 7;
                if *next < chunks {
                    let mut r = [0u8; 8];
                    r[..7].copy_from_slice(&data[*next * 7..*next * 7 + 7]);
                    r[7] = 0x40 | *next as u8;
                    *next += 1;
                    Some(r)
                } else {
                    Some([0, 0, 0, 0, 0, 0, 0, 0x40])
                }
            }
            _ => Some(self.status(0)),
        }
    }

    /// SET_REPORT. `false` when the key has been pulled out.
    pub fn set_feature(&mut self, r: &[u8; 8]) -> bool {
        if self.removed() {
            return false;
        }
        self.writes.push(*r);
        if self.busy {
            self.dropped_writes += 1;
            return true;
        }
        self.busy = true;
        let flags = r[7];
        if flags & 0x80 == 0 {
            return true; // not a frame chunk: ignored
        }
        let seq = flags & 0x1F;
        if seq > 9 {
            // 0x8F (and anything else out of range): back to idle.
            self.end_touch_wait();
            self.phase = Phase::Idle;
            return true;
        }
        let (mut frame, last) = match std::mem::replace(&mut self.phase, Phase::Idle) {
            _ if seq == 0 => ([0u8; 70], None),
            Phase::Receiving { frame, last } => (frame, Some(last)),
            other => {
                self.phase = other;
                return true;
            }
        };
        if last.is_some_and(|l| seq <= l) {
            return true; // out of order: the frame is abandoned
        }
        frame[seq as usize * 7..seq as usize * 7 + 7].copy_from_slice(&r[..7]);
        if seq == 9 {
            self.run(&frame);
        } else {
            self.phase = Phase::Receiving { frame, last: seq };
        }
        true
    }

    fn run(&mut self, frame: &[u8; 70]) {
        let crc = u16::from_le_bytes([frame[65], frame[66]]);
        if crc16(&frame[..64]) != crc {
            return; // rejected
        }
        let mut payload = [0u8; 64];
        payload.copy_from_slice(&frame[..64]);
        match frame[64] {
            0x10 => {
                let serial = lock(&self.shared.state).serial;
                if let Some(s) = serial {
                    self.respond(&s.to_be_bytes());
                }
            }
            0x13 => {
                let info = lock(&self.shared.state).device_info(payload[0]);
                if let Some(info) = info {
                    self.respond(&info);
                }
            }
            cmd @ (0x01 | 0x03) => {
                let slot = usize::from(cmd == 0x03);
                let Some(config) = slot_config(&payload[..52]) else {
                    return; // rejected: the programming sequence stays
                };
                lock(&self.shared.state).write_otp_slot(slot, config);
            }
            cmd @ (0x30 | 0x38) => {
                let slot = usize::from(cmd == 0x38);
                let touch = {
                    let st = lock(&self.shared.state);
                    match &st.otp_slots[slot] {
                        None => return,
                        Some(cfg) => cfg.touch,
                    }
                };
                if touch {
                    let since = self.touch_begin();
                    self.phase = Phase::Touch {
                        slot,
                        challenge: payload,
                        since,
                    };
                } else {
                    self.answer_hmac(slot, &payload);
                }
            }
            _ => {}
        }
    }

    fn answer_hmac(&mut self, slot: usize, challenge: &[u8; 64]) {
        let r = {
            let st = lock(&self.shared.state);
            st.otp_slots[slot].as_ref().map(|c| c.respond(challenge))
        };
        match r {
            Some(r) => self.respond(&r),
            None => self.phase = Phase::Idle,
        }
    }

    fn respond(&mut self, body: &[u8]) {
        let mut data = body.to_vec();
        data.extend_from_slice(&(!crc16(body)).to_le_bytes());
        if std::mem::take(&mut self.corrupt_next) {
            data[0] ^= 0x01;
        }
        data.resize(data.len().div_ceil(7) * 7, 0);
        self.phase = Phase::Responding { data, next: 0 };
    }

    /// Start blinking (the CCID side's touch state: button, hook, request count).
    fn touch_begin(&self) -> Instant {
        let mut t = lock(&self.shared.touch);
        t.waiting = true;
        t.pressed = false;
        t.requests += 1;
        self.shared.touch_cv.notify_all();
        if let Some(hook) = t.hook.clone() {
            drop(t);
            hook();
        }
        Instant::now()
    }

    /// `Some(true)` pressed (or auto-pressed), `Some(false)` timed out, `None` still waiting.
    fn touch_poll(&self, since: Instant) -> Option<bool> {
        let mut t = lock(&self.shared.touch);
        let elapsed = since.elapsed();
        let done = if t.pressed || t.auto_press.is_some_and(|a| elapsed >= a) {
            Some(true)
        } else if elapsed >= t.timeout {
            Some(false)
        } else {
            None
        };
        if done.is_some() {
            t.waiting = false;
            t.pressed = false;
            self.shared.touch_cv.notify_all();
        }
        done
    }

    fn end_touch_wait(&mut self) {
        if matches!(self.phase, Phase::Touch { .. }) {
            let mut t = lock(&self.shared.touch);
            t.waiting = false;
            t.pressed = false;
            self.shared.touch_cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{OtpSlot, VirtualYubiKey, VykConfig};
    use super::*;
    use std::time::Duration;

    fn frame_reports(cmd: u8, payload: &[u8; 64]) -> Vec<[u8; 8]> {
        let mut f = [0u8; 70];
        f[..64].copy_from_slice(payload);
        f[64] = cmd;
        f[65..67].copy_from_slice(&crc16(payload).to_le_bytes());
        f.chunks(7)
            .enumerate()
            .filter(|(i, c)| *i == 0 || *i == 9 || c.iter().any(|&b| b != 0))
            .map(|(i, c)| {
                let mut r = [0u8; 8];
                r[..7].copy_from_slice(c);
                r[7] = 0x80 | i as u8;
                r
            })
            .collect()
    }

    fn send(h: &mut VirtualOtpHid, reports: &[[u8; 8]]) {
        for r in reports {
            while h.get_feature().unwrap()[7] & 0x80 != 0 {}
            h.set_feature(r);
        }
    }

    fn read(h: &mut VirtualOtpHid) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let r = h.get_feature().unwrap();
            match r[7] {
                0 => return None,
                b if b & 0x40 != 0 && b & 0x1F == 0 && !out.is_empty() => break,
                b if b & 0x40 != 0 => out.extend_from_slice(&r[..7]),
                _ => {}
            }
        }
        h.set_feature(&[0, 0, 0, 0, 0, 0, 0, 0x8F]);
        Some(out)
    }

    #[test]
    fn hmac_over_hid_equals_the_slot_and_the_ccid_answer() {
        let key = *b"twenty-byte-hmac-key";
        let mut k = VirtualYubiKey::new(
            VykConfig::new()
                .serial(42)
                .otp_slot(2, OtpSlot::hmac_sha1(key, false)),
        );
        let mut h = k.otp_hid();
        let status = h.get_feature().unwrap();
        assert_eq!(status[7], 0);
        assert_eq!(status[5], 0x02, "slot 2 configured");
        let mut ch = [0u8; 64];
        ch[..32].copy_from_slice(&[0xAB; 32]);
        send(&mut h, &frame_reports(0x38, &ch));
        let data = read(&mut h).unwrap();
        assert_eq!(data.len(), 28);
        assert_eq!(crc16(&data[..22]), 0xF0B8);
        let mut apdu = vec![0x00, 0xA4, 0x04, 0x00, 7];
        apdu.extend_from_slice(&super::super::OTP_AID);
        k.transmit(&apdu);
        let mut apdu = vec![0x00, 0x01, 0x38, 0x00, 64];
        apdu.extend_from_slice(&ch);
        let ccid = k.transmit(&apdu);
        assert_eq!(&data[..20], &ccid[..20]);
        assert_eq!(h.dropped_writes(), 0);
    }

    #[test]
    fn serial_bad_crc_empty_slot_and_impatient_writes() {
        let k = VirtualYubiKey::new(VykConfig::new().serial(0x01020304));
        let mut h = k.otp_hid();
        send(&mut h, &frame_reports(0x10, &[0; 64]));
        assert_eq!(&read(&mut h).unwrap()[..4], &[1, 2, 3, 4]);
        let mut bad = frame_reports(0x10, &[0; 64]);
        bad.last_mut().unwrap()[2] ^= 1;
        send(&mut h, &bad);
        assert!(read(&mut h).is_none(), "bad CRC: rejected");
        send(&mut h, &frame_reports(0x30, &[1; 64]));
        assert!(read(&mut h).is_none(), "empty slot: rejected");
        for r in frame_reports(0x10, &[0; 64]) {
            h.set_feature(&r); // never waits for 0x80 to clear
        }
        assert!(h.dropped_writes() > 0);
        assert!(read(&mut h).is_none());
    }

    #[test]
    fn touch_slot_waits_for_the_button() {
        let k = VirtualYubiKey::new(
            VykConfig::new()
                .otp_slot(1, OtpSlot::hmac_sha1([7; 20], true))
                .touch_timeout(Duration::from_secs(5)),
        );
        let button = k.handle().button();
        let mut h = k.otp_hid();
        send(&mut h, &frame_reports(0x30, &[9; 64]));
        assert_eq!(
            h.get_feature().unwrap()[7],
            0x80,
            "busy with the last chunk"
        );
        let r = h.get_feature().unwrap();
        assert_eq!(r[7] & 0xE0, 0x20, "touch pending");
        assert!((1..=5).contains(&(r[7] & 0x1F)), "seconds left");
        assert!(button.press());
        let data = read(&mut h).unwrap();
        assert_eq!(crc16(&data[..22]), 0xF0B8);

        k.handle().set_touch_timeout(Duration::from_millis(30));
        send(&mut h, &frame_reports(0x30, &[9; 64]));
        std::thread::sleep(Duration::from_millis(50));
        assert!(read(&mut h).is_none(), "touch timed out: no data");
    }
}
