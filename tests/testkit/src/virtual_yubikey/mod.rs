//! A virtual YubiKey 5 as ykman sees it over CCID: the YKOATH applet, the management
//! applet (device info with the serial), the OTP applet (serial, and HMAC-SHA1
//! challenge-response slots, part B.8), and `6A82` for every other AID. One implementation, used in memory (`transmit`) and behind a real
//! pcscd through vpcd (`crate::pcsc_stack`).
//!
//! Facts come from Yubico's YKOATH protocol specification. Where the real device's
//! behaviour is not documented the card is strict (it rejects rather than guesses), and
//! the choice is written next to the code.

mod apdu;
mod crypto;
pub mod otp_hid;
pub mod piv;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use apdu::*;
pub use crypto::derive_access_key;
pub use otp_hid::VirtualOtpHid;

/// YKOATH applet AID.
pub const OATH_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x05, 0x27, 0x21, 0x01];
/// Management applet AID.
pub const MGMT_AID: [u8; 8] = [0xA0, 0x00, 0x00, 0x05, 0x27, 0x47, 0x11, 0x17];
/// OTP applet AID (over CCID).
pub const OTP_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01];

/// ATR of a YubiKey 5 NFC over USB. `ATR[1] & 0xF0 == 0xF0` makes ykman assume USB (and,
/// with a YubiKey reader name, extended APDUs).
pub const USB_ATR: [u8; 23] = [
    0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0, 0x57, 0x59,
    0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40,
];
/// A contactless-style ATR (ykman then assumes NFC: short APDUs).
pub const NFC_ATR: [u8; 17] = [
    0x3B, 0x8C, 0x80, 0x01, 0x59, 0x75, 0x62, 0x69, 0x6B, 0x65, 0x79, 0x4E, 0x45, 0x4F, 0x72, 0x33,
    0x58,
];

/// Device-info capability bits (A.12).
pub mod capability {
    pub const OTP: u16 = 0x01;
    pub const U2F: u16 = 0x02;
    pub const OPENPGP: u16 = 0x08;
    pub const PIV: u16 = 0x10;
    pub const OATH: u16 = 0x20;
    pub const HSMAUTH: u16 = 0x100;
    pub const FIDO2: u16 = 0x200;
}

/// Hash of an OATH credential (low nibble of the type|algo byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn code(self) -> u8 {
        match self {
            Algorithm::Sha1 => 0x01,
            Algorithm::Sha256 => 0x02,
            Algorithm::Sha512 => 0x03,
        }
    }
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0x01 => Some(Algorithm::Sha1),
            0x02 => Some(Algorithm::Sha256),
            0x03 => Some(Algorithm::Sha512),
            _ => None,
        }
    }
    /// Hash block size: keys longer than this are hashed before PUT (A.9).
    pub fn block_size(self) -> usize {
        match self {
            Algorithm::Sha1 | Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// OATH credential type (high nibble of the type|algo byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OathType {
    Hotp,
    Totp,
}

impl OathType {
    pub fn code(self) -> u8 {
        match self {
            OathType::Hotp => 0x10,
            OathType::Totp => 0x20,
        }
    }
}

/// Minimum key length stored on the card (A.9).
pub const HMAC_MINIMUM_KEY_SIZE: usize = 14;

/// Prepare a raw secret the way a client must before PUT (A.9): hash it if longer than
/// the block size, then zero-pad to 14 bytes.
pub fn prepare_key(algorithm: Algorithm, secret: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut key = if secret.len() > algorithm.block_size() {
        Zeroizing::new(crypto::hash(algorithm, secret))
    } else {
        Zeroizing::new(secret.to_vec())
    };
    if key.len() < HMAC_MINIMUM_KEY_SIZE {
        key.resize(HMAC_MINIMUM_KEY_SIZE, 0);
    }
    key
}

/// Decode a Base32 secret the way ykman does: upper-case, spaces removed, padding optional.
pub fn decode_base32(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let cleaned: Zeroizing<String> = Zeroizing::new(
        text.chars()
            .filter(|c| !c.is_whitespace() && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    data_encoding::BASE32_NOPAD
        .decode(cleaned.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| "secret is not valid Base32".to_string())
}

/// One OATH credential to preload on the card (as if PUT by a client).
#[derive(Clone)]
pub struct Account {
    name: String,
    secret: Zeroizing<Vec<u8>>,
    oath_type: OathType,
    algorithm: Algorithm,
    digits: u8,
    period: u32,
    touch: bool,
    counter: u32,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.credential_id())
            .field("type", &self.oath_type)
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("touch", &self.touch)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Account {
    /// A TOTP credential (SHA-1, 6 digits, 30 s, no touch) from raw secret bytes.
    pub fn totp(name: &str, secret: &[u8]) -> Self {
        Account {
            name: name.to_string(),
            secret: Zeroizing::new(secret.to_vec()),
            oath_type: OathType::Totp,
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            touch: false,
            counter: 0,
        }
    }
    /// A TOTP credential from a Base32 secret.
    pub fn totp_base32(name: &str, secret_b32: &str) -> Result<Self, String> {
        Ok(Self::totp(name, &decode_base32(secret_b32)?))
    }
    /// An HOTP credential with the card's initial counter.
    pub fn hotp(name: &str, secret: &[u8], counter: u32) -> Self {
        Account {
            oath_type: OathType::Hotp,
            counter,
            ..Self::totp(name, secret)
        }
    }
    pub fn hotp_base32(name: &str, secret_b32: &str, counter: u32) -> Result<Self, String> {
        Ok(Self::hotp(name, &decode_base32(secret_b32)?, counter))
    }
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }
    pub fn digits(mut self, digits: u8) -> Self {
        self.digits = digits;
        self
    }
    /// TOTP period. A period other than 30 becomes the `"<period>/"` prefix of the
    /// credential ID (A.5); the card itself never uses the period.
    pub fn period(mut self, period: u32) -> Self {
        self.period = period;
        self
    }
    pub fn touch(mut self, touch: bool) -> Self {
        self.touch = touch;
        self
    }
    /// The credential ID stored on the card: `[<period>/]<name>` (prefix only for TOTP
    /// with period ≠ 30 and a name that has none yet).
    pub fn credential_id(&self) -> String {
        let has_prefix = self
            .name
            .split_once('/')
            .is_some_and(|(p, _)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if self.oath_type == OathType::Totp && self.period != 30 && !has_prefix {
            format!("{}/{}", self.period, self.name)
        } else {
            self.name.clone()
        }
    }
}

/// Configuration of a virtual YubiKey. Fields are public; the builder methods are
/// shorthands.
#[derive(Clone)]
pub struct VykConfig {
    /// Serial reported by the management applet and the OTP applet; `None` = hidden.
    pub serial: Option<u32>,
    /// Firmware version (also the OATH applet version). Default 5.4.3.
    pub firmware: (u8, u8, u8),
    /// Device-info form factor byte (A.12). Default 0x01 (USB-A keychain).
    pub form_factor: u8,
    /// USB supported/enabled capabilities. Default OTP|U2F|OPENPGP|PIV|OATH|FIDO2.
    pub capabilities: u16,
    pub accounts: Vec<Account>,
    /// OATH password; the access key is derived per A.6 from the card's NAME salt.
    pub password: Option<Zeroizing<String>>,
    /// Whether the management applet answers SELECT (false: 6A82, so ykman falls back to
    /// the OTP applet for the serial).
    pub management: bool,
    /// Whether the OTP applet answers SELECT.
    pub otp_applet: bool,
    /// The two OTP slots (index 0 = slot 1); `None` = not programmed.
    pub otp_slots: [Option<OtpSlot>; 2],
    /// Largest response data sent in one reply; longer responses chain with `61xx` and
    /// SEND_REMAINING (A5). Default 256.
    pub max_chunk: usize,
    /// How long a touch-required CALCULATE waits for the button before SW 6982. Default 15 s.
    pub touch_timeout: Duration,
    /// The OATH NAME (PBKDF2 salt); random when `None`. RESET always makes a new random one.
    pub name_salt: Option<[u8; 8]>,
    /// OATH credential capacity; `None` = 32 before firmware 5.7.0, 64 from 5.7.0.
    pub capacity: Option<usize>,
    /// The ATR. Default [`USB_ATR`].
    pub atr: Vec<u8>,
}

impl fmt::Debug for VykConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VykConfig")
            .field("serial", &self.serial)
            .field("firmware", &self.firmware)
            .field("form_factor", &self.form_factor)
            .field("accounts", &self.accounts)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("management", &self.management)
            .field("max_chunk", &self.max_chunk)
            .field("touch_timeout", &self.touch_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for VykConfig {
    fn default() -> Self {
        VykConfig {
            serial: Some(12345678),
            firmware: (5, 4, 3),
            form_factor: 0x01,
            capabilities: capability::OTP
                | capability::U2F
                | capability::OPENPGP
                | capability::PIV
                | capability::OATH
                | capability::FIDO2,
            accounts: Vec::new(),
            password: None,
            management: true,
            otp_applet: true,
            otp_slots: [None, None],
            max_chunk: 256,
            touch_timeout: Duration::from_secs(15),
            name_salt: None,
            capacity: None,
            atr: USB_ATR.to_vec(),
        }
    }
}

impl VykConfig {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn serial(mut self, serial: u32) -> Self {
        self.serial = Some(serial);
        self
    }
    pub fn firmware(mut self, major: u8, minor: u8, patch: u8) -> Self {
        self.firmware = (major, minor, patch);
        self
    }
    pub fn account(mut self, account: Account) -> Self {
        self.accounts.push(account);
        self
    }
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(Zeroizing::new(password.to_string()));
        self
    }
    /// Program OTP slot `slot` (1 or 2) for HMAC-SHA1 challenge-response.
    pub fn otp_slot(mut self, slot: u8, config: OtpSlot) -> Self {
        assert!(slot == 1 || slot == 2, "OTP slots are 1 and 2");
        self.otp_slots[slot as usize - 1] = Some(config);
        self
    }
    pub fn without_management(mut self) -> Self {
        self.management = false;
        self
    }
    pub fn max_chunk(mut self, bytes: usize) -> Self {
        self.max_chunk = bytes.max(1);
        self
    }
    pub fn touch_timeout(mut self, timeout: Duration) -> Self {
        self.touch_timeout = timeout;
        self
    }
    pub fn name_salt(mut self, salt: [u8; 8]) -> Self {
        self.name_salt = Some(salt);
        self
    }
    pub fn atr(mut self, atr: &[u8]) -> Self {
        self.atr = atr.to_vec();
        self
    }
}

/// An OTP slot programmed for HMAC-SHA1 challenge-response (as `ykman otp chalresp`
/// programs it: `CHAL_RESP | CHAL_HMAC | HMAC_LT64`, touch optional).
#[derive(Clone)]
pub struct OtpSlot {
    /// The 20-byte HMAC-SHA1 key.
    pub key: Zeroizing<[u8; 20]>,
    /// `CHAL_BTN_TRIG`: the key waits for a touch before answering.
    pub touch: bool,
    /// `HMAC_LT64`: the 64-byte challenge buffer is cut after its last byte that differs
    /// from the buffer's final byte (part B.8). Off: all 64 bytes are hashed.
    pub lt64: bool,
}

impl OtpSlot {
    /// HMAC-SHA1 with `HMAC_LT64`, as ykman programs it.
    pub fn hmac_sha1(key: [u8; 20], touch: bool) -> Self {
        OtpSlot {
            key: Zeroizing::new(key),
            touch,
            lt64: true,
        }
    }

    /// The bytes the key hashes for a challenge received over CCID: the challenge in a
    /// 64-byte buffer (zero-filled when shorter), then, with `HMAC_LT64`, every trailing
    /// byte equal to the buffer's last byte dropped.
    pub fn hashed_message(&self, challenge: &[u8]) -> Vec<u8> {
        let mut buf = challenge.to_vec();
        buf.resize(64, 0);
        if self.lt64 {
            let last = buf[63];
            while buf.last() == Some(&last) {
                buf.pop();
            }
        }
        buf
    }

    /// The 20-byte response to `challenge`.
    pub fn respond(&self, challenge: &[u8]) -> Vec<u8> {
        crypto::hmac(
            Algorithm::Sha1,
            &self.key[..],
            &self.hashed_message(challenge),
        )
    }
}

impl fmt::Debug for OtpSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtpSlot")
            .field("key", &"<redacted>")
            .field("touch", &self.touch)
            .field("lt64", &self.lt64)
            .finish()
    }
}

/// A fault applied to the next APDU(s), in injection order (one fault per APDU).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Process the APDU, then keep only the first `n` bytes of the reply (data || SW).
    Truncate(usize),
    /// Process the APDU, then flip every bit of one data byte (the middle one); a reply
    /// without data gets SW `6F00` instead.
    Corrupt,
    /// Do not process the APDU; reply with just this status word.
    Sw(u16),
    /// The card is pulled out: this and every later APDU gets an empty reply (no card)
    /// until [`VykHandle::reinsert`].
    Remove,
    /// Process the APDU normally but only after this delay (a slow card).
    Delay(Duration),
}

/// One APDU seen by the card, without its data (data may hold secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApduRecord {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    /// Length of the whole command APDU.
    pub len: usize,
    /// Whether it used the extended-length form (`00 Lc_hi Lc_lo` / `00 Le_hi Le_lo`).
    pub extended: bool,
    /// Status word answered (`None` when the card was absent).
    pub sw: Option<u16>,
    /// Length of the answer's data (without the status word).
    pub reply_len: usize,
    /// Whether the answer carried a piece of a PIV private key held on the card.
    pub reveals_private_key: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applet {
    Oath,
    Management,
    Otp,
    Piv,
}

struct Credential {
    id: Vec<u8>,
    oath_type: OathType,
    algorithm: Algorithm,
    digits: u8,
    key: Zeroizing<Vec<u8>>,
    touch: bool,
    counter: u32,
}

struct AccessKey {
    algorithm: Algorithm,
    key: Zeroizing<Vec<u8>>,
}

struct CardState {
    serial: Option<u32>,
    firmware: (u8, u8, u8),
    form_factor: u8,
    capabilities: u16,
    management: bool,
    otp_applet: bool,
    otp_slots: [Option<OtpSlot>; 2],
    /// The OTP programming sequence: counts slot writes, 0 once both slots are empty.
    otp_pgm_seq: u8,
    max_chunk: usize,
    capacity: usize,
    selected: Option<Applet>,
    credentials: Vec<Credential>,
    salt: [u8; 8],
    access_key: Option<AccessKey>,
    unlocked: bool,
    select_challenge: Option<[u8; 8]>,
    pending: Vec<u8>,
    chain: Option<(u8, u8, u8, Vec<u8>)>,
    piv: piv::PivState,
}

struct TouchState {
    waiting: bool,
    pressed: bool,
    requests: u64,
    timeout: Duration,
    auto_press: Option<Duration>,
    hook: Option<TouchHook>,
}

/// Called (on the card's thread) each time the card starts waiting for touch.
pub type TouchHook = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    state: Mutex<CardState>,
    touch: Mutex<TouchState>,
    touch_cv: Condvar,
    faults: Mutex<VecDeque<Fault>>,
    removed: AtomicBool,
    history: Mutex<Vec<ApduRecord>>,
    atr: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The virtual card. `transmit` takes a command APDU and returns `data || SW1 SW2`.
pub struct VirtualYubiKey {
    shared: Arc<Shared>,
}

impl fmt::Debug for VirtualYubiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.shared.state);
        f.debug_struct("VirtualYubiKey")
            .field("serial", &st.serial)
            .field("firmware", &st.firmware)
            .field("credentials", &st.credentials.len())
            .finish_non_exhaustive()
    }
}

/// Press the simulated button from any thread. Cheap to clone.
#[derive(Clone)]
pub struct Button {
    shared: Arc<Shared>,
}

impl fmt::Debug for Button {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Button")
    }
}

impl Button {
    /// Press the button. Like the real key, a press only counts while the card is
    /// waiting for touch (blinking); returns whether it satisfied a waiting request.
    pub fn press(&self) -> bool {
        let mut t = lock(&self.shared.touch);
        if t.waiting {
            t.pressed = true;
            self.shared.touch_cv.notify_all();
            true
        } else {
            false
        }
    }
    /// Whether the card is blocked waiting for touch right now.
    pub fn is_waiting(&self) -> bool {
        lock(&self.shared.touch).waiting
    }
    /// Block until the card waits for touch (returns true) or `timeout` passes (false).
    pub fn wait_for_touch_request(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut t = lock(&self.shared.touch);
        while !t.waiting {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            t = self
                .shared
                .touch_cv
                .wait_timeout(t, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
    /// Wait for a touch request, then press. Returns whether a press was delivered.
    pub fn press_when_requested(&self, timeout: Duration) -> bool {
        self.wait_for_touch_request(timeout) && self.press()
    }
    /// How many times the card has started waiting for touch.
    pub fn touch_requests(&self) -> u64 {
        lock(&self.shared.touch).requests
    }
}

/// Control and inspection of a card from outside (tests): button, faults, removal,
/// state. Cheap to clone; works while the card is owned by another thread.
#[derive(Clone)]
pub struct VykHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for VykHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VykHandle")
    }
}

impl VykHandle {
    /// The management device info page `page` (length byte, then TLVs), as READ_CONFIG
    /// answers it on every interface; `None` before firmware 4.1.
    pub fn device_info(&self, page: u8) -> Option<Vec<u8>> {
        lock(&self.shared.state).device_info(page)
    }

    pub fn button(&self) -> Button {
        Button {
            shared: self.shared.clone(),
        }
    }
    /// Queue a fault for the next APDU (faults apply one per APDU, in order).
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push_back(fault);
    }
    /// Pull the card out now: later APDUs get an empty reply; a pending touch wait ends
    /// with no reply. Over pcscd, see `pcsc_stack::CardHandle::remove`.
    pub fn remove(&self) {
        self.shared.removed.store(true, Ordering::SeqCst);
        let _t = lock(&self.shared.touch);
        self.shared.touch_cv.notify_all();
    }
    /// Put the card back (power-on state: nothing selected, locked again).
    pub fn reinsert(&self) {
        self.shared.removed.store(false, Ordering::SeqCst);
        lock(&self.shared.state).power_reset();
    }
    pub fn is_removed(&self) -> bool {
        self.shared.removed.load(Ordering::SeqCst)
    }
    /// Every APDU the card has seen (no data bytes).
    pub fn history(&self) -> Vec<ApduRecord> {
        lock(&self.shared.history).clone()
    }
    pub fn clear_history(&self) {
        lock(&self.shared.history).clear();
    }
    /// Credential IDs stored on the card, in storage order.
    pub fn credential_ids(&self) -> Vec<String> {
        lock(&self.shared.state)
            .credentials
            .iter()
            .map(|c| String::from_utf8_lossy(&c.id).into_owned())
            .collect()
    }
    /// The card's HOTP counter for a credential.
    pub fn hotp_counter(&self, id: &str) -> Option<u32> {
        lock(&self.shared.state)
            .credentials
            .iter()
            .find(|c| c.id == id.as_bytes() && c.oath_type == OathType::Hotp)
            .map(|c| c.counter)
    }
    /// Whether the credential requires touch.
    pub fn requires_touch(&self, id: &str) -> Option<bool> {
        lock(&self.shared.state)
            .credentials
            .iter()
            .find(|c| c.id == id.as_bytes())
            .map(|c| c.touch)
    }
    /// Whether an OATH password (access key) is set.
    pub fn has_password(&self) -> bool {
        lock(&self.shared.state).access_key.is_some()
    }
    /// The current OATH NAME (PBKDF2 salt).
    pub fn name_salt(&self) -> [u8; 8] {
        lock(&self.shared.state).salt
    }
    pub fn set_touch_timeout(&self, timeout: Duration) {
        lock(&self.shared.touch).timeout = timeout;
    }
    /// Run `hook` (on the card's thread, before it blocks) whenever the card starts
    /// waiting for touch. The hook may call [`Button::press`].
    pub fn on_touch_request(&self, hook: impl Fn() + Send + Sync + 'static) {
        lock(&self.shared.touch).hook = Some(Arc::new(hook));
    }
    pub fn clear_touch_hook(&self) {
        lock(&self.shared.touch).hook = None;
    }
    /// Press the button automatically `delay` after each touch request (None = off).
    pub fn set_auto_press(&self, delay: Option<Duration>) {
        lock(&self.shared.touch).auto_press = delay;
    }
    pub fn atr(&self) -> Vec<u8> {
        self.shared.atr.clone()
    }
    /// PIV PIN attempts left.
    pub fn piv_pin_retries(&self) -> u8 {
        lock(&self.shared.state).piv.pin_retries()
    }
    /// The algorithm of the PIV key in `slot` (0x9a…), if one was generated there.
    pub fn piv_key_algorithm(&self, slot: u8) -> Option<piv::PivAlgorithm> {
        lock(&self.shared.state).piv.slot_algorithm(slot)
    }
    /// The raw value of a PIV data object (what PUT DATA stored inside tag 53).
    pub fn piv_object(&self, id: u32) -> Option<Vec<u8>> {
        lock(&self.shared.state).piv.object(id)
    }
    /// Signatures the PIV applet has made.
    pub fn piv_signatures(&self) -> u64 {
        lock(&self.shared.state).piv.signatures
    }
    /// Set the PIV PIN (as `ykman piv access change-pin` would).
    pub fn piv_set_pin(&self, pin: &str) {
        lock(&self.shared.state).piv.set_pin(pin);
    }
}

enum Outcome {
    Reply(Vec<u8>, u16),
    /// A CALCULATE that must wait for touch; computed after the press.
    NeedsTouch {
        index_id: Vec<u8>,
        challenge: Vec<u8>,
        truncated: bool,
    },
    /// An OTP HMAC-SHA1 challenge to a touch-triggered slot; answered after the press.
    OtpNeedsTouch {
        slot: usize,
        challenge: Vec<u8>,
    },
    /// A PIV signature whose key's touch policy wants the button; made after the press.
    PivNeedsTouch(piv::PendingSign),
}

fn sw_only(sw: u16) -> Outcome {
    Outcome::Reply(Vec::new(), sw)
}

fn with_sw(mut data: Vec<u8>, sw: u16) -> Vec<u8> {
    data.extend_from_slice(&sw.to_be_bytes());
    data
}

impl VirtualYubiKey {
    pub fn new(config: VykConfig) -> Self {
        let salt = config.name_salt.unwrap_or_else(crypto::random_bytes::<8>);
        let capacity =
            config
                .capacity
                .unwrap_or(if config.firmware >= (5, 7, 0) { 64 } else { 32 });
        let credentials = config
            .accounts
            .iter()
            .map(|a| Credential {
                id: a.credential_id().into_bytes(),
                oath_type: a.oath_type,
                algorithm: a.algorithm,
                digits: a.digits,
                key: prepare_key(a.algorithm, &a.secret),
                touch: a.touch,
                counter: a.counter,
            })
            .collect();
        let access_key = config.password.as_ref().map(|p| AccessKey {
            algorithm: Algorithm::Sha1,
            key: Zeroizing::new(derive_access_key(p, &salt).to_vec()),
        });
        let state = CardState {
            serial: config.serial,
            firmware: config.firmware,
            form_factor: config.form_factor,
            capabilities: config.capabilities,
            management: config.management,
            otp_applet: config.otp_applet,
            otp_slots: config.otp_slots.clone(),
            otp_pgm_seq: u8::from(config.otp_slots.iter().any(Option::is_some)),
            max_chunk: config.max_chunk.max(1),
            capacity,
            selected: None,
            credentials,
            salt,
            access_key,
            unlocked: false,
            select_challenge: None,
            pending: Vec::new(),
            chain: None,
            piv: piv::PivState::default(),
        };
        VirtualYubiKey {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                touch: Mutex::new(TouchState {
                    waiting: false,
                    pressed: false,
                    requests: 0,
                    timeout: config.touch_timeout,
                    auto_press: None,
                    hook: None,
                }),
                touch_cv: Condvar::new(),
                faults: Mutex::new(VecDeque::new()),
                removed: AtomicBool::new(false),
                history: Mutex::new(Vec::new()),
                atr: config.atr.clone(),
            }),
        }
    }

    /// The card's ATR.
    pub fn atr(&self) -> Vec<u8> {
        self.shared.atr.clone()
    }

    /// The key's OTP HID interface (feature reports), sharing its slots, serial and button.
    pub fn otp_hid(&self) -> VirtualOtpHid {
        VirtualOtpHid::new(self.shared.clone())
    }

    pub fn handle(&self) -> VykHandle {
        VykHandle {
            shared: self.shared.clone(),
        }
    }

    pub fn button(&self) -> Button {
        self.handle().button()
    }

    /// Card reset / power cycle: nothing selected, OATH session locked again.
    pub fn power_reset(&mut self) {
        lock(&self.shared.state).power_reset();
    }

    /// Send one command APDU; returns `response data || SW1 SW2`, or an empty vector when
    /// the card has been removed. Blocks on a touch-required CALCULATE until the button
    /// is pressed or the touch timeout passes (then SW 6982).
    pub fn transmit(&mut self, apdu: &[u8]) -> Vec<u8> {
        let reply = self.transmit_inner(apdu);
        let sw = (reply.len() >= 2)
            .then(|| u16::from_be_bytes([reply[reply.len() - 2], reply[reply.len() - 1]]));
        let reveals_private_key = lock(&self.shared.state).piv.reveals_private_key(&reply);
        lock(&self.shared.history).push(ApduRecord {
            cla: apdu.first().copied().unwrap_or(0),
            ins: apdu.get(1).copied().unwrap_or(0),
            p1: apdu.get(2).copied().unwrap_or(0),
            p2: apdu.get(3).copied().unwrap_or(0),
            len: apdu.len(),
            extended: apdu::parse(apdu).is_ok_and(|c| c.extended),
            sw,
            reply_len: reply.len().saturating_sub(2),
            reveals_private_key,
        });
        reply
    }

    fn transmit_inner(&mut self, apdu: &[u8]) -> Vec<u8> {
        if self.shared.removed.load(Ordering::SeqCst) {
            return Vec::new();
        }
        let fault = lock(&self.shared.faults).pop_front();
        match fault {
            Some(Fault::Sw(sw)) => return sw.to_be_bytes().to_vec(),
            Some(Fault::Remove) => {
                self.handle().remove();
                return Vec::new();
            }
            Some(Fault::Delay(d)) => std::thread::sleep(d),
            _ => {}
        }
        let mut reply = self.process(apdu);
        if self.shared.removed.load(Ordering::SeqCst) {
            return Vec::new();
        }
        match fault {
            Some(Fault::Truncate(n)) => reply.truncate(n),
            Some(Fault::Corrupt) => {
                if reply.len() > 2 {
                    let i = (reply.len() - 2) / 2;
                    reply[i] ^= 0xFF;
                } else {
                    reply = vec![0x6F, 0x00];
                }
            }
            _ => {}
        }
        reply
    }

    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        let outcome = {
            let mut st = lock(&self.shared.state);
            st.dispatch(apdu)
        };
        match outcome {
            Outcome::Reply(data, sw) => {
                let mut st = lock(&self.shared.state);
                st.finish(data, sw)
            }
            Outcome::NeedsTouch {
                index_id,
                challenge,
                truncated,
            } => {
                if !self.wait_for_touch() {
                    return with_sw(Vec::new(), SW_SECURITY);
                }
                let mut st = lock(&self.shared.state);
                match st.calculate_now(&index_id, &challenge, truncated) {
                    Ok(data) => st.finish(data, SW_OK),
                    Err(sw) => with_sw(Vec::new(), sw),
                }
            }
            Outcome::OtpNeedsTouch { slot, challenge } => {
                // Touch timeout over CCID: the status word is not documented; like an OATH
                // touch timeout, 6982.
                if !self.wait_for_touch() {
                    return with_sw(Vec::new(), SW_SECURITY);
                }
                let mut st = lock(&self.shared.state);
                match &st.otp_slots[slot] {
                    Some(cfg) => {
                        let r = cfg.respond(&challenge);
                        st.finish(r, SW_OK)
                    }
                    None => with_sw(Vec::new(), SW_CONDITIONS),
                }
            }
            Outcome::PivNeedsTouch(pending) => {
                // A real key answers 6982 (security status) when nobody touches it in time.
                if !self.wait_for_touch() {
                    return with_sw(Vec::new(), SW_SECURITY);
                }
                let mut st = lock(&self.shared.state);
                match st.piv.sign_now(&pending, true) {
                    piv::PivOutcome::Reply(data, sw) => st.finish(data, sw),
                    piv::PivOutcome::NeedsTouch(_) => with_sw(Vec::new(), SW_CONDITIONS),
                }
            }
        }
    }

    /// Blink and wait for the button. True when pressed in time.
    fn wait_for_touch(&self) -> bool {
        let start = Instant::now();
        let mut t = lock(&self.shared.touch);
        t.waiting = true;
        t.pressed = false;
        t.requests += 1;
        self.shared.touch_cv.notify_all();
        let timeout = t.timeout;
        if let Some(hook) = t.hook.clone() {
            drop(t);
            hook();
            t = lock(&self.shared.touch);
        }
        let pressed = loop {
            if t.pressed {
                break true;
            }
            if self.shared.removed.load(Ordering::SeqCst) {
                break false;
            }
            let elapsed = start.elapsed();
            if let Some(auto) = t.auto_press
                && elapsed >= auto
            {
                break true;
            }
            if elapsed >= timeout {
                break false;
            }
            let mut until = timeout - elapsed;
            if let Some(auto) = t.auto_press {
                until = until.min(auto.saturating_sub(elapsed));
            }
            t = self
                .shared
                .touch_cv
                .wait_timeout(t, until.max(Duration::from_millis(1)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        t.waiting = false;
        t.pressed = false;
        self.shared.touch_cv.notify_all();
        pressed
    }
}

impl CardState {
    fn power_reset(&mut self) {
        self.selected = None;
        self.unlocked = false;
        self.select_challenge = None;
        self.pending.clear();
        self.chain = None;
        self.piv.reset_session();
    }

    /// Apply response chaining and append the SW.
    fn finish(&mut self, mut data: Vec<u8>, sw: u16) -> Vec<u8> {
        if sw == SW_OK && data.len() > self.max_chunk {
            self.pending = data.split_off(self.max_chunk);
            let remaining = self.pending.len();
            let sw2 = if remaining > 0xFF { 0 } else { remaining as u8 };
            return with_sw(data, 0x6100 | sw2 as u16);
        }
        with_sw(data, sw)
    }

    fn dispatch(&mut self, apdu: &[u8]) -> Outcome {
        let cmd = match parse(apdu) {
            Ok(c) => c,
            Err(sw) => return sw_only(sw),
        };
        if cmd.cla & !0x10 != 0 {
            return sw_only(SW_CLA_NOT_SUPPORTED);
        }
        // Command chaining: collect pieces sent with CLA|0x10.
        if cmd.cla & 0x10 != 0 {
            match &mut self.chain {
                Some((ins, p1, p2, buf)) if (*ins, *p1, *p2) == (cmd.ins, cmd.p1, cmd.p2) => {
                    buf.extend_from_slice(&cmd.data)
                }
                _ => self.chain = Some((cmd.ins, cmd.p1, cmd.p2, cmd.data.clone())),
            }
            return sw_only(SW_OK);
        }
        let mut cmd = cmd;
        if let Some((ins, p1, p2, mut buf)) = self.chain.take() {
            if (ins, p1, p2) != (cmd.ins, cmd.p1, cmd.p2) {
                return sw_only(SW_CONDITIONS);
            }
            buf.extend_from_slice(&cmd.data);
            cmd.data = buf;
        }
        // Response chaining: SEND REMAINING (A5 for OATH; ISO GET RESPONSE C0 elsewhere).
        if cmd.ins == 0xA5 && self.selected == Some(Applet::Oath)
            || cmd.ins == 0xC0 && self.selected != Some(Applet::Oath)
        {
            if self.pending.is_empty() {
                return sw_only(SW_CONDITIONS);
            }
            let data = std::mem::take(&mut self.pending);
            return Outcome::Reply(data, SW_OK);
        }
        self.pending.clear();
        if cmd.ins == 0xA4 && cmd.p1 == 0x04 {
            return self.select(&cmd.data);
        }
        match self.selected {
            Some(Applet::Oath) => self.oath(&cmd),
            Some(Applet::Management) => self.management(&cmd),
            Some(Applet::Otp) => self.otp(&cmd),
            Some(Applet::Piv) => match self.piv.command(&cmd, self.firmware, self.serial) {
                piv::PivOutcome::Reply(data, sw) => Outcome::Reply(data, sw),
                piv::PivOutcome::NeedsTouch(p) => Outcome::PivNeedsTouch(p),
            },
            None => sw_only(SW_INS_NOT_SUPPORTED),
        }
    }

    fn select(&mut self, aid: &[u8]) -> Outcome {
        let applet = if aid == OATH_AID {
            Some(Applet::Oath)
        } else if aid == MGMT_AID && self.management {
            Some(Applet::Management)
        } else if aid == OTP_AID && self.otp_applet {
            Some(Applet::Otp)
        } else if aid.starts_with(&piv::PIV_AID) && self.capabilities & capability::PIV != 0 {
            Some(Applet::Piv)
        } else {
            None
        };
        // Selecting anything ends the OATH session's unlock.
        self.unlocked = false;
        self.select_challenge = None;
        self.piv.reset_session();
        self.selected = applet;
        let (ma, mi, pa) = self.firmware;
        match applet {
            None => sw_only(SW_FILE_NOT_FOUND),
            Some(Applet::Oath) => {
                let mut out = Vec::new();
                put_tlv(&mut out, 0x79, &[ma, mi, pa]);
                put_tlv(&mut out, 0x71, &self.salt);
                if let Some(k) = &self.access_key {
                    let chal = crypto::random_bytes::<8>();
                    self.select_challenge = Some(chal);
                    put_tlv(&mut out, 0x74, &chal);
                    put_tlv(&mut out, 0x7B, &[k.algorithm.code()]);
                }
                Outcome::Reply(out, SW_OK)
            }
            Some(Applet::Management) => Outcome::Reply(
                format!("Virtual mgr - FW version {ma}.{mi}.{pa}").into_bytes(),
                SW_OK,
            ),
            Some(Applet::Otp) => Outcome::Reply(self.otp_status(), SW_OK),
            Some(Applet::Piv) => Outcome::Reply(piv::PivState::select_reply(), SW_OK),
        }
    }

    fn otp_status(&self) -> Vec<u8> {
        let (ma, mi, pa) = self.firmware;
        // version, programming sequence, touch level (LE, B.2): 0x01/0x02 = slot 1/2 holds
        // a configuration. Challenge-response slots do not set the "touch-triggered"
        // (keyboard output) bits 0x04/0x08.
        let mut level = 0u16;
        for (i, s) in self.otp_slots.iter().enumerate() {
            if s.is_some() {
                level |= 1 << i;
            }
        }
        let [lo, hi] = level.to_le_bytes();
        vec![ma, mi, pa, self.otp_pgm_seq, lo, hi]
    }

    /// Write OTP slot `slot` (0 or 1): `Some` a configuration, `None` deleted. The
    /// programming sequence counts the write, or goes back to 0 when no slot is left.
    fn write_otp_slot(&mut self, slot: usize, config: Option<OtpSlot>) {
        self.otp_slots[slot] = config;
        self.otp_pgm_seq = if self.otp_slots.iter().all(Option::is_none) {
            0
        } else {
            self.otp_pgm_seq.wrapping_add(1)
        };
    }

    fn otp(&mut self, cmd: &Command) -> Outcome {
        match (cmd.ins, cmd.p1) {
            (0x03, _) => Outcome::Reply(self.otp_status(), SW_OK),
            (0x01, 0x10) => match self.serial {
                Some(s) => Outcome::Reply(s.to_be_bytes().to_vec(), SW_OK),
                None => sw_only(SW_CONDITIONS),
            },
            // HMAC-SHA1 challenge-response, slot 1 (0x30) / slot 2 (0x38): up to 64 bytes.
            (0x01, p1 @ (0x30 | 0x38)) => {
                let slot = usize::from(p1 == 0x38);
                if cmd.data.is_empty() || cmd.data.len() > 64 {
                    return sw_only(SW_WRONG_LENGTH);
                }
                match &self.otp_slots[slot] {
                    None => sw_only(SW_CONDITIONS),
                    Some(cfg) if cfg.touch => Outcome::OtpNeedsTouch {
                        slot,
                        challenge: cmd.data.clone(),
                    },
                    Some(cfg) => Outcome::Reply(cfg.respond(&cmd.data), SW_OK),
                }
            }
            (0x01, _) => sw_only(SW_CONDITIONS),
            _ => sw_only(SW_INS_NOT_SUPPORTED),
        }
    }

    fn management(&mut self, cmd: &Command) -> Outcome {
        if cmd.ins != 0x1D {
            return sw_only(SW_INS_NOT_SUPPORTED);
        }
        match self.device_info(cmd.p1) {
            Some(info) => Outcome::Reply(info, SW_OK),
            None => sw_only(SW_INS_NOT_SUPPORTED),
        }
    }

    /// The management device info (a length byte, then TLVs) of page `page`, as
    /// READ_CONFIG over CCID and YK4_CAPABILITIES over OTP HID answer it; `None` before
    /// firmware 4.1, which has no such command.
    fn device_info(&self, page: u8) -> Option<Vec<u8>> {
        if self.firmware < (4, 1, 0) {
            return None;
        }
        let mut tlvs = Vec::new();
        if page == 0 {
            let caps = self.capabilities.to_be_bytes();
            put_tlv(&mut tlvs, 0x01, &caps);
            if let Some(s) = self.serial {
                put_tlv(&mut tlvs, 0x02, &s.to_be_bytes());
            }
            put_tlv(&mut tlvs, 0x03, &caps);
            put_tlv(&mut tlvs, 0x04, &[self.form_factor]);
            let (ma, mi, pa) = self.firmware;
            put_tlv(&mut tlvs, 0x05, &[ma, mi, pa]);
            put_tlv(&mut tlvs, 0x06, &[0x00, 0x00]);
            put_tlv(&mut tlvs, 0x07, &[0x0F]);
            put_tlv(&mut tlvs, 0x08, &[0x00]);
            put_tlv(&mut tlvs, 0x0A, &[0x00]);
        }
        let mut out = vec![tlvs.len() as u8];
        out.extend_from_slice(&tlvs);
        Some(out)
    }

    fn locked(&self) -> bool {
        self.access_key.is_some() && !self.unlocked
    }

    fn find(&self, id: &[u8]) -> Option<usize> {
        self.credentials.iter().position(|c| c.id == id)
    }

    fn oath(&mut self, cmd: &Command) -> Outcome {
        let needs_auth = !matches!(cmd.ins, 0x04 | 0xA3);
        if needs_auth && self.locked() {
            return sw_only(SW_SECURITY);
        }
        if matches!(cmd.ins, 0x04) {
            return self.oath_reset(cmd);
        }
        let tlvs = match parse_tlvs(&cmd.data) {
            Ok(t) => t,
            Err(sw) => return sw_only(sw),
        };
        let get = |tag: u8| {
            tlvs.iter()
                .find(|t| t.tag == tag)
                .map(|t| t.value.as_slice())
        };
        let result = match cmd.ins {
            0x01 => self.put(&tlvs).map(|()| Vec::new()),
            0x02 => self.delete(get(0x71)).map(|()| Vec::new()),
            0x03 => self.set_code(&tlvs).map(|()| Vec::new()),
            0x05 => self.rename(&tlvs).map(|()| Vec::new()),
            0xA1 => Ok(self.list()),
            0xA2 => return self.calculate(cmd.p2, get(0x71), get(0x74)),
            0xA3 => self.validate(get(0x75), get(0x74)),
            0xA4 => self.calculate_all(cmd.p2, get(0x74)),
            _ => Err(SW_INS_NOT_SUPPORTED),
        };
        match result {
            Ok(data) => Outcome::Reply(data, SW_OK),
            Err(sw) => sw_only(sw),
        }
    }

    fn oath_reset(&mut self, cmd: &Command) -> Outcome {
        if (cmd.p1, cmd.p2) != (0xDE, 0xAD) {
            return sw_only(SW_WRONG_P1P2);
        }
        self.credentials.clear();
        self.access_key = None;
        self.unlocked = false;
        self.select_challenge = None;
        self.salt = crypto::random_bytes::<8>();
        sw_only(SW_OK)
    }

    fn valid_name(name: Option<&[u8]>) -> Result<&[u8], u16> {
        match name {
            Some(n) if !n.is_empty() && n.len() <= 64 => Ok(n),
            _ => Err(SW_WRONG_DATA),
        }
    }

    fn put(&mut self, tlvs: &[Tlv]) -> Result<(), u16> {
        let get = |tag: u8| {
            tlvs.iter()
                .find(|t| t.tag == tag)
                .map(|t| t.value.as_slice())
        };
        let name = Self::valid_name(get(0x71))?;
        let key = get(0x73).ok_or(SW_WRONG_DATA)?;
        if key.len() < 2 {
            return Err(SW_WRONG_DATA);
        }
        let oath_type = match key[0] & 0xF0 {
            0x10 => OathType::Hotp,
            0x20 => OathType::Totp,
            _ => return Err(SW_WRONG_DATA),
        };
        let algorithm = Algorithm::from_code(key[0] & 0x0F).ok_or(SW_WRONG_DATA)?;
        let digits = key[1];
        // ykman offers 6-8 digits (5-character Steam codes are derived from a full HMAC).
        if !(6..=8).contains(&digits) {
            return Err(SW_WRONG_DATA);
        }
        let secret = &key[2..];
        // Strict: a client must prepare keys per A.9 (≥14 bytes, ≤ block size).
        if secret.len() < HMAC_MINIMUM_KEY_SIZE || secret.len() > algorithm.block_size() {
            return Err(SW_WRONG_DATA);
        }
        let mut touch = false;
        for t in tlvs.iter().filter(|t| t.tag == 0x78) {
            match t.value[0] {
                0x02 => touch = true,
                0x01 => {}
                _ => return Err(SW_WRONG_DATA),
            }
        }
        let counter = match get(0x7A) {
            None => 0,
            Some(v) if v.len() == 4 && oath_type == OathType::Hotp => {
                u32::from_be_bytes([v[0], v[1], v[2], v[3]])
            }
            Some(_) => return Err(SW_WRONG_DATA),
        };
        let cred = Credential {
            id: name.to_vec(),
            oath_type,
            algorithm,
            digits,
            key: Zeroizing::new(secret.to_vec()),
            touch,
            counter,
        };
        match self.find(name) {
            Some(i) => self.credentials[i] = cred,
            None if self.credentials.len() >= self.capacity => return Err(SW_NO_SPACE),
            None => self.credentials.push(cred),
        }
        Ok(())
    }

    fn delete(&mut self, name: Option<&[u8]>) -> Result<(), u16> {
        let name = name.ok_or(SW_WRONG_DATA)?;
        let i = self.find(name).ok_or(SW_NO_SUCH_OBJECT)?;
        self.credentials.remove(i);
        Ok(())
    }

    fn set_code(&mut self, tlvs: &[Tlv]) -> Result<(), u16> {
        let get = |tag: u8| {
            tlvs.iter()
                .find(|t| t.tag == tag)
                .map(|t| t.value.as_slice())
        };
        let key = get(0x73).ok_or(SW_WRONG_DATA)?;
        if key.is_empty() {
            self.access_key = None;
            self.unlocked = false;
            return Ok(());
        }
        if key[0] & 0xF0 != 0x20 && key[0] & 0xF0 != 0x10 {
            return Err(SW_WRONG_DATA);
        }
        let algorithm = Algorithm::from_code(key[0] & 0x0F).ok_or(SW_WRONG_DATA)?;
        let secret = &key[1..];
        if secret.is_empty() {
            return Err(SW_WRONG_DATA);
        }
        let challenge = get(0x74).ok_or(SW_WRONG_DATA)?;
        let response = get(0x75).ok_or(SW_WRONG_DATA)?;
        let expected = crypto::hmac(algorithm, secret, challenge);
        if !crypto::ct_eq(&expected, response) {
            return Err(SW_NO_SUCH_OBJECT);
        }
        self.access_key = Some(AccessKey {
            algorithm,
            key: Zeroizing::new(secret.to_vec()),
        });
        // A YubiKey 4/5 keeps the session unlocked after SET_CODE (the NEO did not).
        self.unlocked = true;
        Ok(())
    }

    fn rename(&mut self, tlvs: &[Tlv]) -> Result<(), u16> {
        if self.firmware < (5, 3, 0) {
            return Err(SW_INS_NOT_SUPPORTED);
        }
        let mut names = tlvs.iter().filter(|t| t.tag == 0x71);
        let old = names
            .next()
            .map(|t| t.value.as_slice())
            .ok_or(SW_WRONG_DATA)?;
        let new = Self::valid_name(names.next().map(|t| t.value.as_slice()))?;
        let i = self.find(old).ok_or(SW_NO_SUCH_OBJECT)?;
        if old != new && self.find(new).is_some() {
            return Err(SW_WRONG_DATA);
        }
        self.credentials[i].id = new.to_vec();
        Ok(())
    }

    fn list(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for c in &self.credentials {
            let mut v = vec![c.oath_type.code() | c.algorithm.code()];
            v.extend_from_slice(&c.id);
            put_tlv(&mut out, 0x72, &v);
        }
        out
    }

    fn response_tlv(out: &mut Vec<u8>, c: &Credential, mac: &[u8], truncated: bool) {
        if truncated {
            let mut v = vec![c.digits];
            v.extend_from_slice(&crypto::truncate(mac).to_be_bytes());
            put_tlv(out, 0x76, &v);
        } else {
            let mut v = vec![c.digits];
            v.extend_from_slice(mac);
            put_tlv(out, 0x75, &v);
        }
    }

    fn calculate(&mut self, p2: u8, name: Option<&[u8]>, challenge: Option<&[u8]>) -> Outcome {
        if p2 > 1 {
            return sw_only(SW_WRONG_P1P2);
        }
        let (Some(name), Some(challenge)) = (name, challenge) else {
            return sw_only(SW_WRONG_DATA);
        };
        let Some(i) = self.find(name) else {
            return sw_only(SW_NO_SUCH_OBJECT);
        };
        if self.credentials[i].touch {
            return Outcome::NeedsTouch {
                index_id: name.to_vec(),
                challenge: challenge.to_vec(),
                truncated: p2 == 1,
            };
        }
        match self.calculate_now(name, challenge, p2 == 1) {
            Ok(d) => Outcome::Reply(d, SW_OK),
            Err(sw) => sw_only(sw),
        }
    }

    /// Compute a CALCULATE response (after any touch). TOTP uses the client's challenge;
    /// HOTP uses the card's counter (8-byte BE, RFC 4226) and then increments it.
    fn calculate_now(
        &mut self,
        id: &[u8],
        challenge: &[u8],
        truncated: bool,
    ) -> Result<Vec<u8>, u16> {
        if self.locked() {
            return Err(SW_SECURITY);
        }
        let i = self.find(id).ok_or(SW_NO_SUCH_OBJECT)?;
        let c = &mut self.credentials[i];
        let mac = match c.oath_type {
            OathType::Totp => crypto::hmac(c.algorithm, &c.key, challenge),
            OathType::Hotp => {
                let msg = (c.counter as u64).to_be_bytes();
                c.counter = c.counter.wrapping_add(1);
                crypto::hmac(c.algorithm, &c.key, &msg)
            }
        };
        let mut out = Vec::new();
        Self::response_tlv(&mut out, &self.credentials[i], &mac, truncated);
        Ok(out)
    }

    fn calculate_all(&mut self, p2: u8, challenge: Option<&[u8]>) -> Result<Vec<u8>, u16> {
        if p2 > 1 {
            return Err(SW_WRONG_P1P2);
        }
        let challenge = challenge.ok_or(SW_WRONG_DATA)?;
        let mut out = Vec::new();
        for c in &self.credentials {
            put_tlv(&mut out, 0x71, &c.id);
            match (c.oath_type, c.touch) {
                (OathType::Hotp, _) => put_tlv(&mut out, 0x77, &[c.digits]),
                (OathType::Totp, true) => put_tlv(&mut out, 0x7C, &[c.digits]),
                (OathType::Totp, false) => {
                    let mac = crypto::hmac(c.algorithm, &c.key, challenge);
                    Self::response_tlv(&mut out, c, &mac, p2 == 1);
                }
            }
        }
        Ok(out)
    }

    fn validate(
        &mut self,
        response: Option<&[u8]>,
        challenge: Option<&[u8]>,
    ) -> Result<Vec<u8>, u16> {
        let Some(key) = &self.access_key else {
            return Err(SW_NO_SUCH_OBJECT);
        };
        let (Some(response), Some(challenge)) = (response, challenge) else {
            return Err(SW_WRONG_DATA);
        };
        if challenge.len() < 8 {
            return Err(SW_WRONG_DATA);
        }
        // The SELECT challenge is good for one attempt.
        let Some(card_challenge) = self.select_challenge.take() else {
            return Err(SW_WRONG_DATA);
        };
        let expected = crypto::hmac(key.algorithm, &key.key, &card_challenge);
        if !crypto::ct_eq(&expected, response) {
            self.unlocked = false;
            return Err(SW_WRONG_DATA);
        }
        self.unlocked = true;
        let mut out = Vec::new();
        put_tlv(
            &mut out,
            0x75,
            &crypto::hmac(key.algorithm, &key.key, challenge),
        );
        Ok(out)
    }
}
