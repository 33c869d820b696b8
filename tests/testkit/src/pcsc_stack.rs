//! A real pcscd with virtual YubiKeys attached through vpcd.
//!
//! pcscd runs in a private network namespace (vpcd listens on 0.0.0.0, which must not
//! be reachable from outside): `unshare --net sh -c 'ip link set lo up; exec pcscd
//! --foreground --config DIR'`. Clients outside the namespace reach pcscd through its
//! unix socket `/run/pcscd/pcscd.comm`. Each card is served by a thread that enters the
//! namespace with `setns()` and connects to vpcd on 127.0.0.1:35963 (slot 0) / 35964
//! (slot 1). Only one pcscd can run per machine (fixed socket path), so [`PcscStack`]
//! holds a process-wide mutex plus an `flock` on [`LOCK_PATH`] for its whole life.
//!
//! Needs root, pcscd, the vpcd driver, `unshare` and `ip`. Tests call
//! [`PcscStack::start_or_skip`]: it skips loudly when something is missing, unless
//! `CI=true`, where a stack that cannot start is a failure.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::virtual_yubikey::{Button, VirtualYubiKey, VykHandle};

/// FRIENDLYNAME of the vpcd reader: the name a real YubiKey 5's CCID reader has, so
/// ykman treats the card as a USB YubiKey.
pub const READER_FRIENDLY_NAME: &str = "Yubico YubiKey OTP+FIDO+CCID";
/// vpcd's TCP port for slot 0 (slot 1 is +1), inside the stack's network namespace.
pub const VPCD_PORT: u16 = 0x8C7B;
/// The daemon's fixed client socket.
pub const PCSCD_SOCKET: &str = "/run/pcscd/pcscd.comm";
/// Cross-process lock serialising every user of the one pcscd.
pub const LOCK_PATH: &str = "/tmp/tapcred-pcsc-stack.lock";
/// PID of the pcscd this module started last (to kill a stale one after a crash).
pub const PID_PATH: &str = "/tmp/tapcred-pcsc-stack.pid";
/// The vpcd driver.
pub const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";

/// The PC/SC reader name for a vpcd slot (0 or 1): `Yubico YubiKey OTP+FIDO+CCID 00 0N`.
pub fn reader_name(slot: u8) -> String {
    format!("{READER_FRIENDLY_NAME} 00 {slot:02}")
}

/// Check what the stack needs. `Err` names the missing piece.
pub fn prerequisites() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root (pcscd in a private network namespace needs root)".into());
    }
    for tool in ["pcscd", "unshare", "ip"] {
        if find_in_path(tool).is_none() {
            return Err(format!(
                "`{tool}` not found on PATH (apt-get install pcscd util-linux iproute2)"
            ));
        }
    }
    if !Path::new(VPCD_DRIVER).exists() {
        return Err(format!(
            "{VPCD_DRIVER} missing (apt-get install vsmartcard-vpcd)"
        ));
    }
    Ok(())
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

static THREAD_LOCK: Mutex<()> = Mutex::new(());

/// Holds both the in-process and the cross-process lock.
struct StackLock {
    _guard: MutexGuard<'static, ()>,
    _file: File,
}

impl StackLock {
    fn acquire() -> Result<StackLock, String> {
        let guard = THREAD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .map_err(|e| format!("cannot open {LOCK_PATH}: {e}"))?;
        // The lock is released when `file`
        // is closed (StackLock dropped).
        if let Err(e) = rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
            return Err(format!("flock {LOCK_PATH}: {e}"));
        }
        Ok(StackLock {
            _guard: guard,
            _file: file,
        })
    }
}

fn process_comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn running_pcscd() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| process_comm(pid).as_deref() == Some("pcscd"))
        .collect()
}

/// Send `sig` to `pid` (a pcscd this module started).
fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(p, sig);
    }
}

fn kill_and_wait(pid: u32) {
    signal(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if process_comm(pid).is_none() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(pid, rustix::process::Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && process_comm(pid).is_some() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pcscd in its own network namespace with the vpcd driver loaded under
/// [`READER_FRIENDLY_NAME`]. Dropping it removes the cards and stops pcscd.
pub struct PcscStack {
    child: Child,
    pid: u32,
    dir: PathBuf,
    cards: Vec<VykHandle>,
    _lock: StackLock,
}

impl std::fmt::Debug for PcscStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscStack")
            .field("pcscd_pid", &self.pid)
            .finish()
    }
}

static STACK_SEQ: AtomicU64 = AtomicU64::new(0);

impl PcscStack {
    /// Start pcscd (waiting for the machine-wide lock first). Fails if prerequisites are
    /// missing or a pcscd this module did not start is running.
    pub fn start() -> Result<PcscStack, String> {
        prerequisites()?;
        let lock = StackLock::acquire()?;
        // A pcscd left behind by a crashed run of ours.
        if let Ok(text) = fs::read_to_string(PID_PATH)
            && let Ok(pid) = text.trim().parse::<u32>()
            && process_comm(pid).as_deref() == Some("pcscd")
        {
            kill_and_wait(pid);
        }
        let _ = fs::remove_file(PID_PATH);
        if let Some(pid) = running_pcscd().first() {
            return Err(format!(
                "another pcscd (pid {pid}) is running and was not started by this test stack; stop it first"
            ));
        }
        fs::create_dir_all("/run/pcscd").map_err(|e| format!("mkdir /run/pcscd: {e}"))?;
        for stale in [PCSCD_SOCKET, "/run/pcscd/pcscd.pid"] {
            let _ = fs::remove_file(stale);
        }

        let dir = std::env::temp_dir().join(format!(
            "tapcred-pcsc-{}-{}",
            std::process::id(),
            STACK_SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let child = launch(&dir)?;
        let pid = child.id();
        let _ = fs::write(PID_PATH, format!("{pid}\n"));
        let mut stack = PcscStack {
            child,
            pid,
            dir,
            cards: Vec::new(),
            _lock: lock,
        };
        stack.wait_ready()?;
        Ok(stack)
    }

    /// [`PcscStack::start`] for tests: `None` (after a loud skip message on stderr) when
    /// prerequisites are missing, unless `CI=true`, where any failure panics.
    pub fn start_or_skip(test: &str) -> Option<PcscStack> {
        if let Err(missing) = prerequisites() {
            crate::ci::skip(test, &format!("the real-pcscd stack needs {missing}"));
            return None;
        }
        match PcscStack::start() {
            Ok(s) => Some(s),
            Err(e) => panic!("{test}: pcscd stack failed to start: {e}"),
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("pcscd exited ({status}): {}", self.log_tail()));
            }
            if Path::new(PCSCD_SOCKET).exists() && self.netns_port_open(VPCD_PORT) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("pcscd not ready after 10 s: {}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Whether vpcd listens on `port` inside the namespace (reads /proc/PID/net/tcp,
    /// which shows the sockets of the process's network namespace).
    fn netns_port_open(&self, port: u16) -> bool {
        let Ok(tcp) = fs::read_to_string(format!("/proc/{}/net/tcp", self.pid)) else {
            return false;
        };
        let suffix = format!(":{port:04X}");
        tcp.lines().skip(1).any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[1].ends_with(&suffix) && cols[3] == "0A"
        })
    }

    /// The last lines of pcscd's output (for error messages).
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("pcscd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join(" | ")
    }

    /// PID of pcscd (also the network namespace's owner).
    pub fn pcscd_pid(&self) -> u32 {
        self.pid
    }

    /// Path of the stack's network namespace (`/proc/PID/ns/net`).
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid))
    }

    /// Insert a card into vpcd slot 0 or 1. Returns once pcscd reports the card present
    /// in [`reader_name`]`(slot)`.
    pub fn insert(&mut self, slot: u8, card: VirtualYubiKey) -> Result<CardHandle, String> {
        if slot > 1 {
            return Err(format!("vpcd has slots 0 and 1, not {slot}"));
        }
        self.cards.push(card.handle());
        let handle = CardHandle::connect(&self.netns_path(), slot, card)?;
        wait_card_present(&reader_name(slot), true, Duration::from_secs(10))
            .map_err(|e| format!("{e}; pcscd: {}", self.log_tail()))?;
        Ok(handle)
    }
}

/// Write the vpcd reader configuration under `dir` and start `unshare --net … pcscd` with
/// it (output to `dir/pcscd.log`).
fn launch(dir: &Path) -> Result<Child, String> {
    let conf = dir.join("reader.conf.d");
    fs::create_dir_all(&conf).map_err(|e| format!("mkdir {}: {e}", conf.display()))?;
    fs::write(
        conf.join("tapcred-vpcd"),
        format!(
            "FRIENDLYNAME \"{READER_FRIENDLY_NAME}\"\nDEVICENAME /dev/null:0x{VPCD_PORT:04X}\nLIBPATH {VPCD_DRIVER}\nCHANNELID 0x{VPCD_PORT:04X}\n"
        ),
    )
    .map_err(|e| format!("write reader.conf: {e}"))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("pcscd.log"))
        .map_err(|e| format!("pcscd log: {e}"))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    // Absolute paths: root's PATH does not always include /usr/sbin.
    let tool = |t: &str| find_in_path(t).ok_or_else(|| format!("`{t}` not found"));
    let (unshare, ip, pcscd) = (tool("unshare")?, tool("ip")?, tool("pcscd")?);
    Command::new(unshare)
        .args([
            "--net",
            "sh",
            "-c",
            "\"$2\" link set lo up && exec \"$3\" --foreground --config \"$1\"",
            "sh",
        ])
        .arg(&conf)
        .arg(ip)
        .arg(pcscd)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("cannot start `unshare --net … pcscd`: {e}"))
}

impl PcscStack {
    /// Kill this stack's pcscd with SIGKILL (a crash: no cleanup, the socket file stays)
    /// and reap it. The cards' vpcd connections break; their handles still give the cards
    /// back ([`CardHandle::remove`]). Only ever this stack's own pcscd.
    pub fn kill_pcscd(&mut self) {
        signal(self.pid, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }

    /// Start pcscd again (after [`PcscStack::kill_pcscd`]), with no cards; the stack keeps
    /// its locks throughout.
    pub fn restart(&mut self) -> Result<(), String> {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_pcscd();
        }
        for stale in [PCSCD_SOCKET, "/run/pcscd/pcscd.pid"] {
            let _ = fs::remove_file(stale);
        }
        self.cards.clear();
        self.child = launch(&self.dir)?;
        self.pid = self.child.id();
        let _ = fs::write(PID_PATH, format!("{}\n", self.pid));
        self.wait_ready()
    }
}

impl Drop for PcscStack {
    fn drop(&mut self) {
        for c in &self.cards {
            c.remove();
        }
        signal(self.pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(PID_PATH);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Wait until pcscd reports `reader` with (or without) a card.
pub fn wait_card_present(reader: &str, present: bool, timeout: Duration) -> Result<(), String> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User)
        .map_err(|e| format!("SCardEstablishContext: {e}"))?;
    let name = std::ffi::CString::new(reader).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    loop {
        let mut states = [pcsc::ReaderState::new(name.clone(), pcsc::State::UNAWARE)];
        let seen = ctx
            .get_status_change(Duration::ZERO, &mut states)
            .ok()
            .map(|()| states[0].event_state());
        if let Some(st) = seen
            && !st.contains(pcsc::State::UNKNOWN)
            && st.contains(pcsc::State::PRESENT) == present
            && (!present || !st.contains(pcsc::State::MUTE))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "reader {reader:?}: card {} not seen within {timeout:?} (last state {seen:?})",
                if present { "insertion" } else { "removal" }
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Enter the network namespace at `ns` for the calling thread only.
pub fn enter_netns(ns: &Path) -> Result<(), String> {
    let f = File::open(ns).map_err(|e| format!("open {}: {e}", ns.display()))?;
    // setns(2): affects only the calling thread (network namespaces are per thread).
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&f),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| format!("setns({}): {e}", ns.display()))?;
    Ok(())
}

fn set_quickack(stream: &TcpStream) {
    let _ = rustix::net::sockopt::set_tcp_quickack(stream, true);
}

/// Connect to vpcd on 127.0.0.1:(35963+slot) in the current network namespace,
/// retrying until `timeout`.
pub fn connect_vpcd(slot: u8, timeout: Duration) -> Result<TcpStream, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect(("127.0.0.1", VPCD_PORT + slot as u16)) {
            Ok(s) => {
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) if Instant::now() > deadline => {
                return Err(format!("connect to vpcd slot {slot}: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Serve the vpcd protocol for `card` on `stream` until the connection ends or the card
/// is removed (an empty reply from `transmit`). Messages are a 2-byte big-endian length
/// and a payload; 1-byte payloads are control (00 off, 01 on, 02 reset, 04 send ATR).
pub fn serve_vpcd(stream: &mut TcpStream, card: &mut VirtualYubiKey) -> std::io::Result<()> {
    loop {
        set_quickack(stream);
        let mut len = [0u8; 2];
        stream.read_exact(&mut len)?;
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        set_quickack(stream);
        stream.read_exact(&mut msg)?;
        let reply = match msg.as_slice() {
            [0x00] | [0x01] | [0x02] => {
                card.power_reset();
                continue;
            }
            [0x04] => {
                if card.handle().is_removed() {
                    return Ok(());
                }
                card.atr()
            }
            [_] => continue,
            apdu => {
                let r = card.transmit(apdu);
                if r.is_empty() {
                    // The card was pulled out: drop the connection, pcscd sees removal.
                    return Ok(());
                }
                r
            }
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        out.extend_from_slice(&reply);
        stream.write_all(&out)?;
    }
}

/// A card inserted into the stack. Dropping it removes the card.
pub struct CardHandle {
    slot: u8,
    vyk: VykHandle,
    stream: TcpStream,
    thread: Option<JoinHandle<VirtualYubiKey>>,
}

impl std::fmt::Debug for CardHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardHandle")
            .field("slot", &self.slot)
            .finish()
    }
}

impl CardHandle {
    fn connect(ns: &Path, slot: u8, mut card: VirtualYubiKey) -> Result<CardHandle, String> {
        let vyk = card.handle();
        let (tx, rx) = std::sync::mpsc::channel::<Result<TcpStream, String>>();
        let ns = ns.to_path_buf();
        let thread = std::thread::Builder::new()
            .name(format!("vpcd-card-{slot}"))
            .spawn(move || {
                let stream =
                    enter_netns(&ns).and_then(|()| connect_vpcd(slot, Duration::from_secs(10)));
                let mut stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return card;
                    }
                };
                match stream.try_clone() {
                    Ok(c) => {
                        let _ = tx.send(Ok(c));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return card;
                    }
                }
                let _ = serve_vpcd(&mut stream, &mut card);
                let _ = stream.shutdown(Shutdown::Both);
                card
            })
            .map_err(|e| format!("spawn card thread: {e}"))?;
        let stream = rx
            .recv()
            .map_err(|_| "card thread died".to_string())
            .and_then(|r| r)?;
        Ok(CardHandle {
            slot,
            vyk,
            stream,
            thread: Some(thread),
        })
    }

    pub fn slot(&self) -> u8 {
        self.slot
    }
    pub fn reader_name(&self) -> String {
        reader_name(self.slot)
    }
    /// Control and inspection of the card (faults, history, state).
    pub fn vyk(&self) -> &VykHandle {
        &self.vyk
    }
    pub fn button(&self) -> Button {
        self.vyk.button()
    }

    /// Pull the card out: close the vpcd connection and wait until pcscd reports the slot
    /// empty. Returns the card (powered off, usable again) so it can be re-inserted.
    pub fn remove(mut self) -> VirtualYubiKey {
        let card = self.disconnect();
        let _ = wait_card_present(&reader_name(self.slot), false, Duration::from_secs(5));
        card.expect("card thread returns the card")
    }

    fn disconnect(&mut self) -> Option<VirtualYubiKey> {
        let thread = self.thread.take()?;
        self.vyk.remove();
        let _ = self.stream.shutdown(Shutdown::Both);
        let card = thread.join().ok();
        self.vyk.reinsert();
        card
    }
}

impl Drop for CardHandle {
    fn drop(&mut self) {
        self.disconnect();
    }
}
