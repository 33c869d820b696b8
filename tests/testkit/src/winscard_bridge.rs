//! The Linux side of the test-only `winscard.dll` (tests/testkit/winscard/): a loopback TCP
//! server that carries WinSCard calls made by a Windows program under Wine to the real pcscd
//! of the test stack, through the `pcsc` crate.
//!
//! Wine 8's own `winscard.dll` is a stub that never reaches pcscd, so without this a
//! Windows build's PC/SC path cannot run on Linux. The DLL keeps Windows' calling
//! conventions (buffers, allocation, A/W strings); this side does what the Smart Card
//! service does differently from pcsc-lite: Windows reader names (`NAME 0`, `NAME 1`
//! instead of `NAME 00 00`), the RAW protocol value, numbered `SCardStatus` states.
//!
//! Wire format (little-endian): a request is `u32 length | u8 op | body`, a reply is
//! `u32 length | u32 return code | body`; strings and byte strings are `u32 length | bytes`
//! (strings UTF-8). One TCP connection per `SCARDCONTEXT`: closing it (the Windows process
//! exited or was killed) releases the context and every card it connected, as the Smart
//! Card service does for a dead process. `SCardCancel` comes on a connection of its own.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pcsc::{Attribute, Card, Context, Disposition, Protocols, ReaderState, Scope, ShareMode};

/// The environment variable the DLL reads the bridge's port from.
pub const PORT_ENV: &str = "TAPCRED_WINSCARD_BRIDGE_PORT";

mod op {
    pub const ESTABLISH: u8 = 1;
    pub const RELEASE: u8 = 2;
    pub const LIST_READERS: u8 = 3;
    pub const CONNECT: u8 = 4;
    pub const DISCONNECT: u8 = 5;
    pub const STATUS: u8 = 6;
    pub const TRANSMIT: u8 = 7;
    pub const GET_STATUS_CHANGE: u8 = 8;
    pub const BEGIN_TRANSACTION: u8 = 9;
    pub const END_TRANSACTION: u8 = 10;
    pub const GET_ATTRIB: u8 = 11;
    pub const CANCEL: u8 = 12;
    pub const IS_VALID: u8 = 13;
}

/// Windows' values where they differ from pcsc-lite's.
const WIN_PROTOCOL_RAW: u32 = 0x1_0000;
const SCARD_S_SUCCESS: u32 = 0;
const SCARD_E_INVALID_HANDLE: u32 = 0x8010_0003;
const SCARD_E_INVALID_PARAMETER: u32 = 0x8010_0004;
const SCARD_E_INVALID_VALUE: u32 = 0x8010_0011;
const SCARD_E_UNSUPPORTED_FEATURE: u32 = 0x8010_0022;
const SCARD_ATTR_ATR_STRING: u32 = 0x0009_0303;

/// A running bridge. Dropping it stops accepting calls and closes every connection.
pub struct Bridge {
    port: u16,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("port", &self.port).finish()
    }
}

/// Contexts by id, for `SCardCancel` from another connection.
type Contexts = Arc<Mutex<HashMap<u32, Context>>>;

impl Bridge {
    /// Listen on 127.0.0.1 (`port` 0: any free port).
    pub fn start(port: u16) -> io::Result<Bridge> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let contexts: Contexts = Arc::default();
        let (stop2, open2) = (stop.clone(), open.clone());
        let thread = std::thread::Builder::new()
            .name("winscard-bridge".into())
            .spawn(move || {
                let ids = Arc::new(AtomicU32::new(1));
                for stream in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let _ = stream.set_nodelay(true);
                    if let Ok(c) = stream.try_clone() {
                        open2.lock().unwrap_or_else(|p| p.into_inner()).push(c);
                    }
                    let (contexts, ids) = (contexts.clone(), ids.clone());
                    let _ = std::thread::Builder::new()
                        .name("winscard-bridge-conn".into())
                        .spawn(move || serve(stream, &contexts, &ids));
                }
            })?;
        Ok(Bridge {
            port,
            stop,
            open,
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for s in self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request body being read.
struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short request"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "reader name is not UTF-8"))
    }
}

/// A reply being built.
#[derive(Default)]
struct Reply(Vec<u8>);

impl Reply {
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self = self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
}

fn read_frame(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > 1 << 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad frame length",
        ));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn write_reply(s: &mut TcpStream, rv: u32, body: Reply) -> io::Result<()> {
    let mut out = Vec::with_capacity(8 + body.0.len());
    out.extend_from_slice(&((4 + body.0.len()) as u32).to_le_bytes());
    out.extend_from_slice(&rv.to_le_bytes());
    out.extend_from_slice(&body.0);
    s.write_all(&out)
}

fn err_code(e: pcsc::Error) -> u32 {
    e as u32
}

/// One connection: an `ESTABLISH` (then its context's calls until `RELEASE` or close), or
/// a lone `CANCEL`.
fn serve(mut s: TcpStream, contexts: &Contexts, ids: &AtomicU32) {
    let Ok(first) = read_frame(&mut s) else {
        return;
    };
    let mut body = Body(&first[1..]);
    match first[0] {
        op::CANCEL => {
            let ctx = body
                .u32()
                .ok()
                .and_then(|id| contexts.lock().ok()?.get(&id).cloned());
            let rv = match ctx {
                Some(c) => c.cancel().err().map_or(SCARD_S_SUCCESS, err_code),
                None => SCARD_E_INVALID_HANDLE,
            };
            let _ = write_reply(&mut s, rv, Reply::default());
        }
        op::ESTABLISH => {
            let scope = match body.u32() {
                Ok(0) => Scope::User,
                Ok(1) => Scope::Terminal,
                Ok(2) => Scope::System,
                _ => {
                    let _ = write_reply(&mut s, SCARD_E_INVALID_VALUE, Reply::default());
                    return;
                }
            };
            let ctx = match Context::establish(scope) {
                Ok(c) => c,
                Err(e) => {
                    let _ = write_reply(&mut s, err_code(e), Reply::default());
                    return;
                }
            };
            let id = ids.fetch_add(1, Ordering::SeqCst);
            contexts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, ctx.clone());
            if write_reply(&mut s, SCARD_S_SUCCESS, Reply::default().u32(id)).is_ok() {
                let mut session = Session {
                    ctx: &ctx,
                    cards: HashMap::new(),
                    next_card: 1,
                };
                let _ = session.run(&mut s, &[]);
            }
            contexts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
        _ => {
            let _ = write_reply(&mut s, SCARD_E_INVALID_PARAMETER, Reply::default());
        }
    }
}

/// Why [`Session::run`] returned.
enum Exit {
    /// The connection closed, or `RELEASE`.
    Done,
    /// `END_TRANSACTION` for this card, with this disposition (handled by the caller that
    /// began the transaction).
    EndTransaction(u32, u32),
}

struct Session<'c> {
    ctx: &'c Context,
    cards: HashMap<u32, Card>,
    next_card: u32,
}

/// pcsc-lite's reader names with the names Windows would give the same readers: the
/// trailing ` NN NN` (pcsc-lite's reader and slot numbers) replaced by one number that
/// counts readers of the same name, in list order.
fn windows_names(ctx: &Context) -> Result<Vec<(String, CString)>, pcsc::Error> {
    let names = match ctx.list_readers_owned() {
        Ok(n) => n,
        Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut seen: HashMap<String, u32> = HashMap::new();
    Ok(names
        .into_iter()
        .map(|n| {
            let text = n.to_string_lossy().into_owned();
            let base = strip_pcsclite_numbers(&text).to_owned();
            let count = seen.entry(base.clone()).or_insert(0);
            let win = format!("{base} {count}");
            *count += 1;
            (win, n)
        })
        .collect())
}

fn strip_pcsclite_numbers(name: &str) -> &str {
    let b = name.as_bytes();
    let n = b.len();
    let numbered = n > 6
        && b[n - 6] == b' '
        && b[n - 3] == b' '
        && [n - 5, n - 4, n - 2, n - 1]
            .iter()
            .all(|&i| b[i].is_ascii_hexdigit());
    if numbered { &name[..n - 6] } else { name }
}

fn to_pcsc_name(ctx: &Context, win: &str) -> Result<CString, u32> {
    let names = windows_names(ctx).map_err(err_code)?;
    if let Some((_, p)) = names.iter().find(|(w, _)| w == win) {
        return Ok(p.clone());
    }
    // Not one of today's readers (e.g. `\\?PnP?\Notification`): as given.
    CString::new(win).map_err(|_| SCARD_E_INVALID_PARAMETER)
}

fn to_windows_name(ctx: &Context, pcsc_name: &std::ffi::CStr) -> String {
    windows_names(ctx)
        .ok()
        .and_then(|names| names.into_iter().find(|(_, p)| p.as_c_str() == pcsc_name))
        .map(|(w, _)| w)
        .unwrap_or_else(|| pcsc_name.to_string_lossy().into_owned())
}

fn protocols_from_windows(p: u32) -> Protocols {
    let mut out = Protocols::from_bits_truncate((p & 3).into());
    if p & WIN_PROTOCOL_RAW != 0 {
        out |= Protocols::RAW;
    }
    out
}

fn protocol_to_windows(p: Option<pcsc::Protocol>) -> u32 {
    match p {
        Some(pcsc::Protocol::T0) => 1,
        Some(pcsc::Protocol::T1) => 2,
        Some(pcsc::Protocol::RAW) => WIN_PROTOCOL_RAW,
        None => 0,
    }
}

/// pcsc-lite's state bit mask as Windows' numbered state (SCARD_UNKNOWN 0 … SCARD_SPECIFIC 6).
/// pcsc-lite leaves a powered card NEGOTIABLE even once a protocol is in use; Windows
/// reports SCARD_SPECIFIC for it.
fn state_to_windows(s: pcsc::Status, protocol: Option<pcsc::Protocol>) -> u32 {
    use pcsc::Status as S;
    if protocol.is_some() && s.contains(S::POWERED) {
        return 6;
    }
    [
        (S::SPECIFIC, 6),
        (S::NEGOTIABLE, 5),
        (S::POWERED, 4),
        (S::SWALLOWED, 3),
        (S::PRESENT, 2),
        (S::ABSENT, 1),
    ]
    .into_iter()
    .find(|(bit, _)| s.contains(*bit))
    .map_or(0, |(_, n)| n)
}

fn disposition(d: u32) -> Option<Disposition> {
    Some(match d {
        0 => Disposition::LeaveCard,
        1 => Disposition::ResetCard,
        2 => Disposition::UnpowerCard,
        3 => Disposition::EjectCard,
        _ => return None,
    })
}

fn attribute(raw: u32) -> Option<Attribute> {
    use Attribute as A;
    [
        A::VendorName,
        A::VendorIfdType,
        A::VendorIfdVersion,
        A::VendorIfdSerialNo,
        A::ChannelId,
        A::AsyncProtocolTypes,
        A::DefaultClk,
        A::MaxClk,
        A::DefaultDataRate,
        A::MaxDataRate,
        A::MaxIfsd,
        A::SyncProtocolTypes,
        A::PowerMgmtSupport,
        A::UserToCardAuthDevice,
        A::UserAuthInputDevice,
        A::Characteristics,
        A::CurrentProtocolType,
        A::CurrentClk,
        A::CurrentF,
        A::CurrentD,
        A::CurrentN,
        A::CurrentW,
        A::CurrentIfsc,
        A::CurrentIfsd,
        A::CurrentBwt,
        A::CurrentCwt,
        A::CurrentEbcEncoding,
        A::ExtendedBwt,
        A::IccPresence,
        A::IccInterfaceStatus,
        A::CurrentIoState,
        A::IccTypePerAtr,
        A::DeviceUnit,
        A::DeviceInUse,
        A::DeviceFriendlyName,
        A::DeviceSystemName,
    ]
    .into_iter()
    .find(|a| *a as u32 == raw)
}

impl Session<'_> {
    /// Serve requests; `in_tx` are the cards in a transaction begun by the callers up the
    /// stack (each `BEGIN_TRANSACTION` recurses, holding the `pcsc::Transaction`).
    fn run(&mut self, s: &mut TcpStream, in_tx: &[(u32, &Card)]) -> io::Result<Exit> {
        loop {
            let frame = match read_frame(s) {
                Ok(f) => f,
                Err(_) => return Ok(Exit::Done),
            };
            let mut body = Body(&frame[1..]);
            let (rv, reply) = match frame[0] {
                op::RELEASE => {
                    write_reply(s, SCARD_S_SUCCESS, Reply::default())?;
                    return Ok(Exit::Done);
                }
                op::IS_VALID => (SCARD_S_SUCCESS, Reply::default()),
                op::LIST_READERS => match windows_names(self.ctx) {
                    Ok(names) if names.is_empty() => {
                        (err_code(pcsc::Error::NoReadersAvailable), Reply::default())
                    }
                    Ok(names) => names.iter().fold(
                        (0, Reply::default().u32(names.len() as u32)),
                        |(rv, r), (w, _)| (rv, r.bytes(w.as_bytes())),
                    ),
                    Err(e) => (err_code(e), Reply::default()),
                },
                op::CONNECT => self.connect(&mut body)?,
                op::DISCONNECT => {
                    let (id, disp) = (body.u32()?, body.u32()?);
                    if in_tx.iter().any(|(c, _)| *c == id) {
                        // Windows ends the transaction with the disconnect; here the
                        // transaction's owner up the stack must end it first.
                        (SCARD_E_UNSUPPORTED_FEATURE, Reply::default())
                    } else {
                        match (self.cards.remove(&id), disposition(disp)) {
                            (None, _) => (SCARD_E_INVALID_HANDLE, Reply::default()),
                            (Some(c), None) => {
                                self.cards.insert(id, c);
                                (SCARD_E_INVALID_VALUE, Reply::default())
                            }
                            (Some(c), Some(d)) => match c.disconnect(d) {
                                Ok(()) => (SCARD_S_SUCCESS, Reply::default()),
                                Err((c, e)) => {
                                    self.cards.insert(id, c);
                                    (err_code(e), Reply::default())
                                }
                            },
                        }
                    }
                }
                op::STATUS => {
                    let id = body.u32()?;
                    match self.card(id, in_tx) {
                        None => (SCARD_E_INVALID_HANDLE, Reply::default()),
                        Some(card) => match card.status2_owned() {
                            Ok(st) => {
                                let name = st
                                    .reader_names()
                                    .first()
                                    .map(|n| to_windows_name(self.ctx, n))
                                    .unwrap_or_default();
                                (
                                    SCARD_S_SUCCESS,
                                    Reply::default()
                                        .bytes(name.as_bytes())
                                        .u32(state_to_windows(st.status(), st.protocol2()))
                                        .u32(protocol_to_windows(st.protocol2()))
                                        .bytes(st.atr()),
                                )
                            }
                            Err(e) => (err_code(e), Reply::default()),
                        },
                    }
                }
                op::TRANSMIT => {
                    let (id, apdu) = (body.u32()?, body.bytes()?);
                    match self.card(id, in_tx) {
                        None => (SCARD_E_INVALID_HANDLE, Reply::default()),
                        Some(card) => {
                            let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
                            match card.transmit(&apdu, &mut buf) {
                                Ok(resp) => (SCARD_S_SUCCESS, Reply::default().bytes(resp)),
                                Err(e) => (err_code(e), Reply::default()),
                            }
                        }
                    }
                }
                op::GET_STATUS_CHANGE => self.get_status_change(&mut body)?,
                op::BEGIN_TRANSACTION => {
                    let id = body.u32()?;
                    match self.cards.remove(&id) {
                        None => (SCARD_E_INVALID_HANDLE, Reply::default()),
                        Some(mut card) => {
                            let exit = match card.transaction() {
                                Err(e) => {
                                    write_reply(s, err_code(e), Reply::default())?;
                                    None
                                }
                                Ok(tx) => {
                                    write_reply(s, SCARD_S_SUCCESS, Reply::default())?;
                                    let mut inner: Vec<(u32, &Card)> = in_tx.to_vec();
                                    inner.push((id, &tx));
                                    let exit = self.run(s, &inner)?;
                                    drop(inner);
                                    match exit {
                                        Exit::EndTransaction(ended, disp) if ended == id => {
                                            let rv = match disposition(disp) {
                                                None => SCARD_E_INVALID_VALUE,
                                                Some(d) => tx
                                                    .end(d)
                                                    .err()
                                                    .map_or(SCARD_S_SUCCESS, |(_, e)| err_code(e)),
                                            };
                                            write_reply(s, rv, Reply::default())?;
                                            None
                                        }
                                        other => Some(other),
                                    }
                                }
                            };
                            self.cards.insert(id, card);
                            match exit {
                                None => continue,
                                // Connection closed, or the end of an outer transaction.
                                Some(other) => return Ok(other),
                            }
                        }
                    }
                }
                op::END_TRANSACTION => {
                    let (id, disp) = (body.u32()?, body.u32()?);
                    if in_tx.iter().any(|(c, _)| *c == id) {
                        return Ok(Exit::EndTransaction(id, disp));
                    }
                    (err_code(pcsc::Error::NotTransacted), Reply::default())
                }
                op::GET_ATTRIB => {
                    let (id, attr) = (body.u32()?, body.u32()?);
                    match self.card(id, in_tx) {
                        None => (SCARD_E_INVALID_HANDLE, Reply::default()),
                        // Windows' Smart Card service answers the ATR itself (vpcd's driver
                        // does not).
                        Some(card) if attr == SCARD_ATTR_ATR_STRING => match card.status2_owned() {
                            Ok(st) => (SCARD_S_SUCCESS, Reply::default().bytes(st.atr())),
                            Err(e) => (err_code(e), Reply::default()),
                        },
                        Some(card) => match attribute(attr) {
                            None => (SCARD_E_UNSUPPORTED_FEATURE, Reply::default()),
                            Some(a) => match card.get_attribute_owned(a) {
                                Ok(v) => (SCARD_S_SUCCESS, Reply::default().bytes(&v)),
                                Err(e) => (err_code(e), Reply::default()),
                            },
                        },
                    }
                }
                _ => (SCARD_E_INVALID_PARAMETER, Reply::default()),
            };
            write_reply(s, rv, reply)?;
        }
    }

    fn card<'a>(&'a self, id: u32, in_tx: &[(u32, &'a Card)]) -> Option<&'a Card> {
        in_tx
            .iter()
            .find(|(c, _)| *c == id)
            .map(|(_, c)| *c)
            .or_else(|| self.cards.get(&id))
    }

    fn connect(&mut self, body: &mut Body) -> io::Result<(u32, Reply)> {
        let (name, share, protocols) = (body.string()?, body.u32()?, body.u32()?);
        let share = match share {
            1 => ShareMode::Exclusive,
            2 => ShareMode::Shared,
            3 => ShareMode::Direct,
            _ => return Ok((SCARD_E_INVALID_VALUE, Reply::default())),
        };
        let pname = match to_pcsc_name(self.ctx, &name) {
            Ok(n) => n,
            Err(rv) => return Ok((rv, Reply::default())),
        };
        Ok(
            match self
                .ctx
                .connect(&pname, share, protocols_from_windows(protocols))
            {
                Ok(card) => {
                    let protocol = card
                        .status2_owned()
                        .map(|s| protocol_to_windows(s.protocol2()))
                        .unwrap_or(0);
                    let id = self.next_card;
                    self.next_card += 1;
                    self.cards.insert(id, card);
                    (SCARD_S_SUCCESS, Reply::default().u32(id).u32(protocol))
                }
                Err(e) => (err_code(e), Reply::default()),
            },
        )
    }

    fn get_status_change(&self, body: &mut Body) -> io::Result<(u32, Reply)> {
        let (timeout, n) = (body.u32()?, body.u32()?);
        let mut states = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (name, current) = (body.string()?, body.u32()?);
            let pname = match to_pcsc_name(self.ctx, &name) {
                Ok(p) => p,
                Err(rv) => return Ok((rv, Reply::default())),
            };
            states.push(ReaderState::new(
                pname,
                pcsc::State::from_bits_retain(u64::from(current & 0xFFFF)),
            ));
        }
        let timeout = (timeout != u32::MAX).then(|| Duration::from_millis(timeout.into()));
        Ok(match self.ctx.get_status_change(timeout, &mut states) {
            Ok(()) => {
                let reply = states.iter().fold(Reply::default(), |r, st| {
                    let event =
                        (st.event_state().bits() & 0xFFFF) as u32 | (st.event_count() << 16);
                    r.u32(event).bytes(st.atr())
                });
                (SCARD_S_SUCCESS, reply)
            }
            Err(e) => (err_code(e), Reply::default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcsclite_numbers_are_stripped_only_when_present() {
        assert_eq!(
            strip_pcsclite_numbers("Yubico YubiKey OTP+FIDO+CCID 00 01"),
            "Yubico YubiKey OTP+FIDO+CCID"
        );
        assert_eq!(strip_pcsclite_numbers("Plain"), "Plain");
        assert_eq!(strip_pcsclite_numbers("Reader 0"), "Reader 0");
    }

    #[test]
    fn states_become_windows_numbers() {
        use pcsc::Status as S;
        let t1 = Some(pcsc::Protocol::T1);
        assert_eq!(
            state_to_windows(S::PRESENT | S::POWERED | S::SPECIFIC, None),
            6
        );
        assert_eq!(
            state_to_windows(S::PRESENT | S::POWERED | S::NEGOTIABLE, t1),
            6
        );
        assert_eq!(
            state_to_windows(S::PRESENT | S::POWERED | S::NEGOTIABLE, None),
            5
        );
        assert_eq!(state_to_windows(S::ABSENT, None), 1);
        assert_eq!(state_to_windows(S::PRESENT | S::SWALLOWED, None), 3);
        assert_eq!(state_to_windows(S::empty(), None), 0);
    }

    #[test]
    fn raw_protocol_value_is_windows_on_the_wire() {
        assert_eq!(protocol_to_windows(Some(pcsc::Protocol::RAW)), 0x1_0000);
        assert!(protocols_from_windows(0x1_0000).contains(Protocols::RAW));
        assert_eq!(protocols_from_windows(3), Protocols::T0 | Protocols::T1);
    }
}
