//! The FIDO interface of a virtual YubiKey: CTAPHID framing (FIDO CTAP 2.1 §11.2) over
//! 64-byte HID reports, around the CTAP2 commands of [`ctap2`].
//!
//! CTAPHID as modelled here:
//! - **Channels.** INIT on the broadcast channel `ffffffff` allocates a new channel id and
//!   echoes the 8-byte nonce; INIT on an allocated channel resynchronises it (drops its
//!   transaction). Any other command on an unknown, zero or broadcast channel is
//!   `ERR_INVALID_CHANNEL`.
//! - **One transaction at a time.** While one channel's message is being received or its
//!   CBOR request waits for a touch, every other channel gets `ERR_CHANNEL_BUSY`.
//! - **Messages.** Init packet (`cmd | 0x80`, 2-byte length, 57 bytes), continuation
//!   packets (`seq` 0..127, 59 bytes each); a wrong sequence number is `ERR_INVALID_SEQ`, a
//!   new init packet mid-message on the same channel too; a message not completed within
//!   [`MESSAGE_TIMEOUT`] is `ERR_MSG_TIMEOUT`; a length over the 7609-byte maximum is
//!   `ERR_INVALID_LEN`.
//! - **Commands.** PING echoes; WINK answers empty (and counts); MSG (CTAP1/U2F) and LOCK
//!   are `ERR_INVALID_CMD` (capabilities say NMSG, no LOCK); CBOR runs a CTAP2 request;
//!   Yubico's vendor command READ_CONFIG (`0xC2`, page in the payload) answers the
//!   management device info when the key has one ([`FidoInterface::with_device_info`]);
//!   CANCEL ends the channel's waiting request with `CTAP2_ERR_KEEPALIVE_CANCEL`.
//! - **Touch.** A CBOR request needing user presence sends KEEPALIVE (status 2, "user
//!   presence needed") every [`KEEPALIVE_INTERVAL`] until a touch ([`FidoControl::touch`],
//!   e.g. from a button file) arrives or the touch timeout passes
//!   (`CTAP2_ERR_USER_ACTION_TIMEOUT`).
//! - **Faults for tests:** the key can be pulled ([`FidoControl::remove`]), can go silent
//!   (takes requests, never answers), or derive PIN protocol 2's keys wrongly.

pub mod ctap2;
pub mod pin_protocol;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::hid_report::HidInterface;
use crate::virtual_fido2::VirtualAuthenticator;
use ctap2::{Ctap2, Reply};

/// Bytes in one report, each direction.
pub const REPORT_SIZE: usize = 64;
/// The broadcast channel id.
pub const BROADCAST_CID: u32 = 0xFFFF_FFFF;
/// The largest CTAPHID message: one init packet and 128 continuation packets.
pub const MAX_MESSAGE: usize = (REPORT_SIZE - 7) + 128 * (REPORT_SIZE - 5);
/// How long a partly sent message may wait for its next packet.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a waiting request says "user presence needed".
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(100);

/// CTAPHID command bytes (with the init bit).
pub mod cmd {
    pub const PING: u8 = 0x81;
    pub const MSG: u8 = 0x83;
    pub const LOCK: u8 = 0x84;
    pub const INIT: u8 = 0x86;
    pub const WINK: u8 = 0x88;
    pub const CBOR: u8 = 0x90;
    pub const CANCEL: u8 = 0x91;
    /// Yubico vendor command: read the management device info.
    pub const YUBIKEY_READ_CONFIG: u8 = 0xC2;
    pub const KEEPALIVE: u8 = 0xBB;
    pub const ERROR: u8 = 0xBF;
}

/// CTAPHID error codes (the byte of an ERROR response).
pub mod err {
    pub const INVALID_CMD: u8 = 0x01;
    pub const INVALID_PAR: u8 = 0x02;
    pub const INVALID_LEN: u8 = 0x03;
    pub const INVALID_SEQ: u8 = 0x04;
    pub const MSG_TIMEOUT: u8 = 0x05;
    pub const CHANNEL_BUSY: u8 = 0x06;
    pub const INVALID_CHANNEL: u8 = 0x0B;
}

/// KEEPALIVE status bytes.
pub mod keepalive {
    pub const PROCESSING: u8 = 1;
    pub const UP_NEEDED: u8 = 2;
}

const CAPABILITIES: u8 = 0x01 /* WINK */ | 0x04 /* CBOR */ | 0x08 /* NMSG */;
const DEVICE_VERSION: [u8; 3] = [5, 7, 1];

/// The FIDO report descriptor: usage page 0xF1D0, usage 1, 64-byte input and output reports.
pub const REPORT_DESCRIPTOR: [u8; 34] = [
    0x06, 0xD0, 0xF1, // Usage Page (FIDO Alliance)
    0x09, 0x01, // Usage (CTAPHID)
    0xA1, 0x01, // Collection (Application)
    0x09, 0x20, //   Usage (Input Report Data)
    0x15, 0x00, //   Logical Minimum (0)
    0x26, 0xFF, 0x00, //   Logical Maximum (255)
    0x75, 0x08, //   Report Size (8)
    0x95, 0x40, //   Report Count (64)
    0x81, 0x02, //   Input (Data, Var, Abs)
    0x09, 0x21, //   Usage (Output Report Data)
    0x15, 0x00, //   Logical Minimum (0)
    0x26, 0xFF, 0x00, //   Logical Maximum (255)
    0x75, 0x08, //   Report Size (8)
    0x95, 0x40, //   Report Count (64)
    0x91, 0x02, //   Output (Data, Var, Abs)
    0xC0, // End Collection
];

/// Test-side control of a [`FidoInterface`] that is owned by a transport: the button, the
/// plug, silence, winks. Cloning gives another handle to the same key.
#[derive(Clone)]
pub struct FidoControl {
    model: VirtualAuthenticator,
    removed: Arc<AtomicBool>,
    silent: Arc<AtomicBool>,
    winks: Arc<AtomicU32>,
    waiting: Arc<AtomicBool>,
    touches_asked: Arc<AtomicU32>,
    press: Arc<AtomicBool>,
}

impl FidoControl {
    /// Press the button: the next operation needing user presence consumes it.
    pub fn touch(&self) {
        self.model.touch();
    }

    /// Whether a request is waiting for a touch right now (the key would be blinking).
    pub fn waiting_for_touch(&self) -> bool {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Press the button only while a request waits for it, as a real key takes a touch
    /// only then (a transport's button file maps here); false: nothing was waiting. The
    /// key applies the press on its next tick if a request still waits, and drops it
    /// otherwise, so a press racing the end of a request is never left over for the next.
    pub fn press_if_waiting(&self) -> bool {
        let waiting = self.waiting_for_touch();
        if waiting {
            self.press.store(true, Ordering::SeqCst);
        }
        waiting
    }

    /// Pull the key out: from now on it neither reads nor answers.
    pub fn remove(&self) {
        self.removed.store(true, Ordering::SeqCst);
    }

    /// A key that takes every request and never answers (true) or behaves again (false).
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }

    /// How many requests have waited for a touch (the times the key blinked).
    pub fn touches_asked(&self) -> u32 {
        self.touches_asked.load(Ordering::SeqCst)
    }

    /// How many WINK commands the key has seen.
    pub fn winks(&self) -> u32 {
        self.winks.load(Ordering::SeqCst)
    }

    /// The authenticator model behind the key (credentials, PIN, CredRandom).
    pub fn model(&self) -> &VirtualAuthenticator {
        &self.model
    }
}

struct Incoming {
    cid: u32,
    cmd: u8,
    len: usize,
    data: Vec<u8>,
    next_seq: u8,
    last_packet: Instant,
}

struct Waiting {
    cid: u32,
    request: Vec<u8>,
    since: Instant,
    last_keepalive: Instant,
}

/// The FIDO interface of a virtual key, as a [`HidInterface`].
pub struct FidoInterface {
    ctap: Ctap2,
    control: FidoControl,
    touch_timeout: Duration,
    name: String,
    channels: HashSet<u32>,
    next_cid: u32,
    incoming: Option<Incoming>,
    waiting: Option<Waiting>,
    out: VecDeque<Vec<u8>>,
    device_version: [u8; 3],
    device_info: Option<DeviceInfo>,
}

/// The management device info of the key a FIDO interface belongs to, by page.
pub type DeviceInfo = Box<dyn Fn(u8) -> Option<Vec<u8>> + Send>;

impl FidoInterface {
    /// A freshly plugged-in key around `model`; a request needing a touch waits up to
    /// `touch_timeout` for one.
    pub fn new(model: VirtualAuthenticator, touch_timeout: Duration) -> Self {
        let control = FidoControl {
            model: model.clone(),
            removed: Arc::new(AtomicBool::new(false)),
            silent: Arc::new(AtomicBool::new(false)),
            winks: Arc::new(AtomicU32::new(0)),
            waiting: Arc::new(AtomicBool::new(false)),
            touches_asked: Arc::new(AtomicU32::new(0)),
            press: Arc::new(AtomicBool::new(false)),
        };
        let mut first = [0u8; 4];
        getrandom::fill(&mut first).expect("system random");
        FidoInterface {
            ctap: Ctap2::power_up(model),
            control,
            touch_timeout,
            name: "Yubico YubiKey OTP+FIDO+CCID".to_owned(),
            channels: HashSet::new(),
            next_cid: u32::from_be_bytes(first) & 0x7FFF_FFFF,
            incoming: None,
            waiting: None,
            out: VecDeque::new(),
            device_version: DEVICE_VERSION,
            device_info: None,
        }
    }

    /// Part of a whole YubiKey: INIT reports `firmware` as the device version and
    /// READ_CONFIG answers `info` (the key's management device info).
    pub fn with_device_info(mut self, firmware: [u8; 3], info: DeviceInfo) -> Self {
        self.device_version = firmware;
        self.device_info = Some(info);
        self
    }

    /// A handle for the test: touch, unplug, silence.
    pub fn control(&self) -> FidoControl {
        self.control.clone()
    }

    /// Derive PIN protocol 2's keys the wrong way round (a client must then fail).
    pub fn with_protocol2_kdf_fault(mut self) -> Self {
        self.ctap.set_protocol2_kdf_fault(true);
        self
    }

    fn removed(&self) -> bool {
        self.control.removed.load(Ordering::SeqCst)
    }

    /// Queue a response message on `cid`, cut into packets.
    fn send(&mut self, cid: u32, command: u8, payload: &[u8]) {
        if self.control.silent.load(Ordering::SeqCst) {
            return;
        }
        let len = u16::try_from(payload.len()).expect("response fits a CTAPHID message");
        let mut packet = Vec::with_capacity(REPORT_SIZE);
        packet.extend(cid.to_be_bytes());
        packet.push(command);
        packet.extend(len.to_be_bytes());
        let first = payload.len().min(REPORT_SIZE - 7);
        packet.extend(&payload[..first]);
        packet.resize(REPORT_SIZE, 0);
        self.out.push_back(packet);
        for (seq, chunk) in payload[first..].chunks(REPORT_SIZE - 5).enumerate() {
            let mut packet = Vec::with_capacity(REPORT_SIZE);
            packet.extend(cid.to_be_bytes());
            packet.push(u8::try_from(seq).expect("at most 128 continuation packets"));
            packet.extend(chunk);
            packet.resize(REPORT_SIZE, 0);
            self.out.push_back(packet);
        }
    }

    fn error(&mut self, cid: u32, code: u8) {
        self.send(cid, cmd::ERROR, &[code]);
    }

    fn allocate_channel(&mut self) -> u32 {
        loop {
            self.next_cid = self.next_cid.wrapping_add(1);
            let cid = self.next_cid;
            if cid != 0 && cid != BROADCAST_CID && self.channels.insert(cid) {
                return cid;
            }
        }
    }

    /// The channel that owns the device right now, if any.
    fn busy_with(&self) -> Option<u32> {
        self.waiting
            .as_ref()
            .map(|w| w.cid)
            .or(self.incoming.as_ref().map(|i| i.cid))
    }

    fn on_init_packet(&mut self, cid: u32, command: u8, len: usize, data: &[u8]) {
        if command == cmd::INIT {
            if cid != BROADCAST_CID && !self.channels.contains(&cid) {
                return self.error(cid, err::INVALID_CHANNEL);
            }
            if len != 8 {
                return self.error(cid, err::INVALID_LEN);
            }
            if self.busy_with() == Some(cid) {
                self.incoming = None;
                self.waiting = None;
            } else if self.busy_with().is_some() && cid != BROADCAST_CID {
                return self.error(cid, err::CHANNEL_BUSY);
            }
            let new_cid = if cid == BROADCAST_CID {
                self.allocate_channel()
            } else {
                cid
            };
            let mut response = data[..8].to_vec();
            response.extend(new_cid.to_be_bytes());
            response.push(2);
            response.extend(self.device_version);
            response.push(CAPABILITIES);
            return self.send(cid, cmd::INIT, &response);
        }
        if command == cmd::CANCEL {
            if self.waiting.as_ref().is_some_and(|w| w.cid == cid) {
                self.waiting = None;
                self.send(cid, cmd::CBOR, &[ctap2::more_status::KEEPALIVE_CANCEL]);
            }
            return;
        }
        if cid == 0 || cid == BROADCAST_CID || !self.channels.contains(&cid) {
            return self.error(cid, err::INVALID_CHANNEL);
        }
        match self.busy_with() {
            Some(owner) if owner == cid && self.incoming.is_some() => {
                self.incoming = None;
                return self.error(cid, err::INVALID_SEQ);
            }
            Some(_) => return self.error(cid, err::CHANNEL_BUSY),
            None => {}
        }
        if len > MAX_MESSAGE {
            return self.error(cid, err::INVALID_LEN);
        }
        let first = len.min(REPORT_SIZE - 7);
        let incoming = Incoming {
            cid,
            cmd: command,
            len,
            data: data[..first].to_vec(),
            next_seq: 0,
            last_packet: Instant::now(),
        };
        self.receive(incoming);
    }

    fn on_continuation(&mut self, cid: u32, seq: u8, data: &[u8]) {
        let Some(mut incoming) = self.incoming.take() else {
            return; // a stray continuation packet is ignored
        };
        if incoming.cid != cid {
            self.incoming = Some(incoming);
            return self.error(cid, err::CHANNEL_BUSY);
        }
        if seq != incoming.next_seq {
            return self.error(cid, err::INVALID_SEQ);
        }
        let take = (incoming.len - incoming.data.len()).min(data.len());
        incoming.data.extend(&data[..take]);
        incoming.next_seq += 1;
        incoming.last_packet = Instant::now();
        self.receive(incoming);
    }

    fn receive(&mut self, incoming: Incoming) {
        if incoming.data.len() < incoming.len {
            self.incoming = Some(incoming);
            return;
        }
        let Incoming { cid, cmd, data, .. } = incoming;
        self.dispatch(cid, cmd, data);
    }

    fn dispatch(&mut self, cid: u32, command: u8, data: Vec<u8>) {
        match command {
            cmd::PING => self.send(cid, cmd::PING, &data),
            cmd::WINK => {
                self.control.winks.fetch_add(1, Ordering::SeqCst);
                self.send(cid, cmd::WINK, &[]);
            }
            cmd::CBOR if data.is_empty() => self.error(cid, err::INVALID_LEN),
            cmd::CBOR => self.run_cbor(cid, data, Instant::now()),
            cmd::YUBIKEY_READ_CONFIG => {
                let info = self
                    .device_info
                    .as_ref()
                    .and_then(|f| f(data.first().copied().unwrap_or(0)));
                match info {
                    Some(info) => self.send(cid, cmd::YUBIKEY_READ_CONFIG, &info),
                    None => self.error(cid, err::INVALID_CMD),
                }
            }
            cmd::MSG | cmd::LOCK => self.error(cid, err::INVALID_CMD),
            _ => self.error(cid, err::INVALID_CMD),
        }
    }

    fn run_cbor(&mut self, cid: u32, request: Vec<u8>, since: Instant) {
        match self.ctap.handle(&request) {
            Reply::Done(response) => self.send(cid, cmd::CBOR, &response),
            Reply::NeedsTouch => {
                let now = Instant::now();
                if now.duration_since(since) >= self.touch_timeout {
                    return self.send(
                        cid,
                        cmd::CBOR,
                        &[crate::virtual_fido2::status::USER_ACTION_TIMEOUT],
                    );
                }
                let first_wait = self.waiting.is_none();
                self.waiting = Some(Waiting {
                    cid,
                    request,
                    since,
                    last_keepalive: now,
                });
                if first_wait {
                    self.control.touches_asked.fetch_add(1, Ordering::SeqCst);
                    self.send(cid, cmd::KEEPALIVE, &[keepalive::UP_NEEDED]);
                }
            }
        }
    }

    /// Time-driven work: partial messages that expired, waiting requests (touch arrived,
    /// time out, keep-alive due).
    fn tick(&mut self) {
        let now = Instant::now();
        if let Some(incoming) = &self.incoming
            && now.duration_since(incoming.last_packet) >= MESSAGE_TIMEOUT
        {
            let cid = incoming.cid;
            self.incoming = None;
            self.error(cid, err::MSG_TIMEOUT);
        }
        let pressed = self.control.press.swap(false, Ordering::SeqCst);
        let Some(waiting) = self.waiting.take() else {
            return;
        };
        if pressed && !self.control.model.touch_pending() {
            self.control.model.touch();
        }
        if self.control.model.touch_pending()
            || now.duration_since(waiting.since) >= self.touch_timeout
        {
            return self.run_cbor(waiting.cid, waiting.request, waiting.since);
        }
        let due = now.duration_since(waiting.last_keepalive) >= KEEPALIVE_INTERVAL;
        let cid = waiting.cid;
        self.waiting = Some(Waiting {
            last_keepalive: if due { now } else { waiting.last_keepalive },
            ..waiting
        });
        if due {
            self.send(cid, cmd::KEEPALIVE, &[keepalive::UP_NEEDED]);
        }
    }
}

impl HidInterface for FidoInterface {
    fn report_descriptor(&self) -> Vec<u8> {
        REPORT_DESCRIPTOR.to_vec()
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn write_output(&mut self, report: &[u8]) {
        if self.removed() {
            return;
        }
        self.tick();
        self.write_packet(report);
        self.publish_waiting();
    }

    fn read_input(&mut self) -> Option<Vec<u8>> {
        if self.removed() {
            return None;
        }
        self.tick();
        self.publish_waiting();
        self.out.pop_front()
    }

    fn poll_after(&self) -> Option<Duration> {
        if !self.out.is_empty() {
            return Some(Duration::ZERO);
        }
        if self.waiting.is_some() || self.incoming.is_some() {
            return Some(Duration::from_millis(10));
        }
        None
    }

    fn present(&self) -> bool {
        !self.removed()
    }
}

impl FidoInterface {
    fn publish_waiting(&self) {
        self.control
            .waiting
            .store(self.waiting.is_some(), Ordering::SeqCst);
    }

    fn write_packet(&mut self, report: &[u8]) {
        let mut packet = [0u8; REPORT_SIZE];
        let n = report.len().min(REPORT_SIZE);
        packet[..n].copy_from_slice(&report[..n]);
        let cid = u32::from_be_bytes(packet[..4].try_into().expect("4 bytes"));
        let kind = packet[4];
        if kind & 0x80 != 0 {
            let len = usize::from(u16::from_be_bytes([packet[5], packet[6]]));
            self.on_init_packet(cid, kind, len, &packet[7..]);
        } else {
            self.on_continuation(cid, kind, &packet[5..]);
        }
    }
}

#[cfg(test)]
mod tests;
