//! `/dev/hidrawN` as a FUSE file: the FUSE kernel protocol spoken over `/dev/fuse` directly
//! (requests parsed from bytes, replies built as bytes; no libfuse).
//!
//! Each file is one [`HidInterface`]. What a reader sees is what real hidraw gives:
//! - `read()` returns one input report (truncated to the buffer); it blocks until one comes,
//!   or fails with EAGAIN on a non-blocking descriptor; `poll()` reports POLLIN and wakes
//!   sleepers through FUSE poll notifications;
//! - every open descriptor gets every input report from the moment it was opened (hidraw
//!   keeps one queue per open file, up to 64 reports), so processes sharing a key see each
//!   other's answers, as they do on a real key;
//! - `write()` takes the report-id byte first (0 on interfaces without ids) and hands the
//!   rest to the device;
//! - the hidraw ioctls: `HIDIOCGRDESCSIZE`, `HIDIOCGRDESC`, `HIDIOCGRAWINFO`,
//!   `HIDIOCGRAWNAME(len)`, `HIDIOCGRAWPHYS(len)`, `HIDIOCGRAWUNIQ(len)`,
//!   `HIDIOCSFEATURE(len)`, `HIDIOCGFEATURE(len)`. They all encode their size, which is what
//!   lets FUSE's restricted ioctls carry them;
//! - once the device is gone (unplugged): `read()` fails with EIO and `write()`/ioctls with
//!   ENODEV (as the kernel's hidraw driver answers), `poll()` reports POLLHUP|POLLERR, the
//!   file disappears from the directory and the `on_gone` callback runs.
//!
//! The files are opened with `direct_io` (no page cache: one request per read/write).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::hid_report::HidInterface;

const ENOENT: i32 = 2;
const EINTR: i32 = 4;
const EIO: i32 = 5;
const EAGAIN: i32 = 11;
const ENODEV: i32 = 19;
const EINVAL: i32 = 22;
const ENOTTY: i32 = 25;
const EPIPE: i32 = 32;
const ENOSYS: i32 = 38;

const O_NONBLOCK: u32 = 0o4000;

const POLLIN: u32 = 0x001;
const POLLOUT: u32 = 0x004;
const POLLERR: u32 = 0x008;
const POLLHUP: u32 = 0x010;
const POLLRDNORM: u32 = 0x040;
const POLLWRNORM: u32 = 0x100;

/// Input reports hidraw keeps per open file before it drops the oldest.
const QUEUE_REPORTS: usize = 64;
const MAX_WRITE: u32 = 64 * 1024;
const ROOT: u64 = 1;

mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const ACCESS: u32 = 34;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const IOCTL: u32 = 39;
    pub const POLL: u32 = 40;
    pub const BATCH_FORGET: u32 = 42;
}

/// The hidraw ioctls, as `_IOC(dir, 'H', nr, size)`: direction in bits 30-31, size in
/// 16-29, type in 8-15, number in 0-7.
mod ioc {
    pub const READ: u32 = 2;
    pub fn dir(cmd: u32) -> u32 {
        cmd >> 30
    }
    pub fn size(cmd: u32) -> usize {
        ((cmd >> 16) & 0x3FFF) as usize
    }
    pub fn typ(cmd: u32) -> u32 {
        (cmd >> 8) & 0xFF
    }
    pub fn nr(cmd: u32) -> u32 {
        cmd & 0xFF
    }
}

/// One hidraw node: its name in the FUSE directory (`hidraw0`), the device behind it and
/// what `HIDIOCGRAWINFO`/`HIDIOCGRAWPHYS`/`HIDIOCGRAWUNIQ` report.
pub struct HidrawNode {
    pub name: String,
    pub bus: u32,
    pub vendor: u16,
    pub product: u16,
    pub phys: String,
    pub uniq: String,
    pub device: Box<dyn HidInterface>,
}

impl std::fmt::Debug for HidrawNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HidrawNode")
            .field("name", &self.name)
            .field("vendor", &self.vendor)
            .field("product", &self.product)
            .finish_non_exhaustive()
    }
}

struct Node {
    spec: HidrawNode,
    gone: bool,
}

struct OpenFile {
    node: usize,
    queue: VecDeque<Vec<u8>>,
    poll_kh: Option<u64>,
}

struct ParkedRead {
    unique: u64,
    fh: u64,
    size: usize,
}

struct State {
    nodes: Vec<Node>,
    files: HashMap<u64, OpenFile>,
    parked: Vec<ParkedRead>,
    next_fh: u64,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    dev: File,
    stop: AtomicBool,
    unplugged: Vec<Arc<AtomicBool>>,
    on_gone: Box<dyn Fn(&str) + Send + Sync>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running FUSE server for a directory of hidraw files. Dropping it unmounts nothing:
/// the mount lives in the key's mount namespace and goes with it.
pub struct HidrawFs {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HidrawFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HidrawFs")
    }
}

/// A switch that unplugs one node (as pulling the key out does), whatever its device says.
#[derive(Clone, Debug)]
pub struct Unplug(Arc<AtomicBool>);

impl Unplug {
    pub fn unplug(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl HidrawFs {
    /// Mount a FUSE filesystem at `dir` (an existing empty directory) holding `nodes`, and
    /// serve it from two threads (requests, and the input-report pump). `on_gone` runs with
    /// a node's name once its device is unplugged.
    pub fn mount(
        dir: &Path,
        nodes: Vec<HidrawNode>,
        on_gone: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<(HidrawFs, Vec<Unplug>), String> {
        let dev = File::options()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .map_err(|e| format!("opening /dev/fuse: {e}"))?;
        let data = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0,allow_other",
            dev.as_raw_fd()
        );
        let data = std::ffi::CString::new(data).expect("no NUL");
        rustix::mount::mount(
            "tapcred-hidraw",
            dir,
            "fuse",
            rustix::mount::MountFlags::NOSUID,
            data.as_c_str(),
        )
        .map_err(|e| format!("mounting FUSE at {}: {e}", dir.display()))?;
        let unplugged: Vec<Arc<AtomicBool>> = nodes
            .iter()
            .map(|_| Arc::new(AtomicBool::new(false)))
            .collect();
        let switches = unplugged.iter().cloned().map(Unplug).collect();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                nodes: nodes
                    .into_iter()
                    .map(|spec| Node { spec, gone: false })
                    .collect(),
                files: HashMap::new(),
                parked: Vec::new(),
                next_fh: 1,
            }),
            wake: Condvar::new(),
            dev,
            stop: AtomicBool::new(false),
            unplugged,
            on_gone,
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("hidraw-fuse".into())
            .spawn(move || serve(&s))
            .map_err(|e| e.to_string())?;
        let s = shared.clone();
        std::thread::Builder::new()
            .name("hidraw-pump".into())
            .spawn(move || pump(&s))
            .map_err(|e| e.to_string())?;
        Ok((HidrawFs { shared }, switches))
    }

    /// Whether the kernel has ended the session (the filesystem was unmounted).
    pub fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }
}

// ---- bytes in ----

struct In<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> In<'a> {
    fn u32(&mut self) -> u32 {
        let v = self
            .b
            .get(self.at..self.at + 4)
            .map_or(0, |s| u32::from_le_bytes(s.try_into().expect("4 bytes")));
        self.at += 4;
        v
    }
    fn u64(&mut self) -> u64 {
        let v = self
            .b
            .get(self.at..self.at + 8)
            .map_or(0, |s| u64::from_le_bytes(s.try_into().expect("8 bytes")));
        self.at += 8;
        v
    }
    fn rest(&self) -> &'a [u8] {
        self.b.get(self.at..).unwrap_or(&[])
    }
}

// ---- bytes out ----

#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
}

fn send(dev: &File, unique: u64, error: i32, body: &[u8]) {
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_le_bytes());
    msg.extend_from_slice(&(-error).to_le_bytes());
    msg.extend_from_slice(&unique.to_le_bytes());
    msg.extend_from_slice(body);
    // ENOENT: the request was interrupted and is gone; nothing to do.
    let _ = (&*dev).write(&msg);
}

fn reply(dev: &File, unique: u64, body: &[u8]) {
    send(dev, unique, 0, body);
}

fn fail(dev: &File, unique: u64, errno: i32) {
    send(dev, unique, errno, &[]);
}

/// `FUSE_NOTIFY_POLL`: wake the pollers waiting on `kh`.
fn notify_poll(dev: &File, kh: u64) {
    const FUSE_NOTIFY_POLL: i32 = 1;
    let mut msg = Vec::with_capacity(24);
    msg.extend_from_slice(&24u32.to_le_bytes());
    msg.extend_from_slice(&FUSE_NOTIFY_POLL.to_le_bytes());
    msg.extend_from_slice(&0u64.to_le_bytes());
    msg.extend_from_slice(&kh.to_le_bytes());
    let _ = (&*dev).write(&msg);
}

/// `struct fuse_attr` (88 bytes, protocol 7.31).
fn attr(ino: u64) -> Out {
    let mode: u32 = if ino == ROOT { 0o040755 } else { 0o100600 };
    Out::default()
        .u64(ino)
        .u64(0) // size
        .u64(0) // blocks
        .u64(0)
        .u64(0)
        .u64(0) // atime, mtime, ctime
        .u32(0)
        .u32(0)
        .u32(0)
        .u32(mode)
        .u32(if ino == ROOT { 2 } else { 1 })
        .u32(0) // uid
        .u32(0) // gid
        .u32(0) // rdev
        .u32(4096)
        .u32(0) // flags
}

fn entry(ino: u64) -> Vec<u8> {
    Out::default()
        .u64(ino)
        .u64(0) // generation
        .u64(0) // entry_valid: never cached, so an unplugged node vanishes at once
        .u64(1)
        .u32(0)
        .u32(0)
        .bytes(&attr(ino).0)
        .0
}

fn ino_of(node: usize) -> u64 {
    node as u64 + 2
}

fn node_of(st: &State, ino: u64) -> Option<usize> {
    let i = usize::try_from(ino.checked_sub(2)?).ok()?;
    (i < st.nodes.len()).then_some(i)
}

fn serve(s: &Shared) {
    let mut buf = vec![0u8; MAX_WRITE as usize + 4096];
    loop {
        let n = match (&s.dev).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if e.kind() == ErrorKind::Interrupted
                    || e.raw_os_error() == Some(ENOENT)
                    || e.raw_os_error() == Some(EAGAIN) =>
            {
                continue;
            }
            Err(_) => break, // ENODEV: unmounted
        };
        let mut r = In {
            b: &buf[..n],
            at: 0,
        };
        let _len = r.u32();
        let opcode = r.u32();
        let unique = r.u64();
        let nodeid = r.u64();
        let _uid = r.u32();
        let _gid = r.u32();
        let _pid = r.u32();
        let _ = r.u32();
        if opcode == op::DESTROY {
            reply(&s.dev, unique, &[]);
            break;
        }
        handle(s, opcode, unique, nodeid, r);
    }
    s.stop.store(true, Ordering::SeqCst);
    s.wake.notify_all();
}

fn handle(s: &Shared, opcode: u32, unique: u64, nodeid: u64, mut r: In<'_>) {
    let dev = &s.dev;
    match opcode {
        op::INIT => {
            let major = r.u32();
            let _minor = r.u32();
            if major < 7 {
                fail(dev, unique, EINVAL);
                return;
            }
            let body = Out::default()
                .u32(7)
                .u32(31)
                .u32(0) // max_readahead
                .u32(0) // flags
                .u16(16) // max_background
                .u16(12) // congestion_threshold
                .u32(MAX_WRITE)
                .u32(1) // time_gran
                .u16(0)
                .u16(0)
                .u32(0)
                .bytes(&[0; 28]);
            reply(dev, unique, &body.0);
        }
        op::FORGET | op::BATCH_FORGET => {}
        op::LOOKUP => {
            let name = r.rest().split(|&b| b == 0).next().unwrap_or(&[]);
            let st = lock(&s.state);
            let found = st
                .nodes
                .iter()
                .position(|n| !n.gone && n.spec.name.as_bytes() == name);
            match (nodeid, found) {
                (ROOT, Some(i)) => reply(dev, unique, &entry(ino_of(i))),
                _ => fail(dev, unique, ENOENT),
            }
        }
        op::GETATTR | op::SETATTR => {
            let st = lock(&s.state);
            if nodeid != ROOT && node_of(&st, nodeid).is_none() {
                fail(dev, unique, ENOENT);
                return;
            }
            // SETATTR: opening with O_TRUNC (Python's open(path, "wb")) truncates; a
            // device ignores it.
            let body = Out::default().u64(1).u32(0).u32(0).bytes(&attr(nodeid).0);
            reply(dev, unique, &body.0);
        }
        op::STATFS => reply(dev, unique, &[0; 80]),
        op::ACCESS | op::FLUSH | op::RELEASEDIR => reply(dev, unique, &[]),
        op::OPENDIR => reply(dev, unique, &Out::default().u64(0).u32(0).u32(0).0),
        op::READDIR => {
            let _fh = r.u64();
            let offset = r.u64();
            let size = r.u32() as usize;
            let st = lock(&s.state);
            let mut out = Vec::new();
            let live: Vec<(u64, String)> = st
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| !n.gone)
                .map(|(i, n)| (ino_of(i), n.spec.name.clone()))
                .collect();
            for (k, (ino, name)) in live.iter().enumerate().skip(offset as usize) {
                let mut d = Out::default()
                    .u64(*ino)
                    .u64(k as u64 + 1)
                    .u32(name.len() as u32)
                    .u32(8) // DT_REG
                    .bytes(name.as_bytes())
                    .0;
                d.resize(d.len().div_ceil(8) * 8, 0);
                if out.len() + d.len() > size {
                    break;
                }
                out.extend_from_slice(&d);
            }
            reply(dev, unique, &out);
        }
        op::OPEN => {
            let mut st = lock(&s.state);
            let Some(i) = node_of(&st, nodeid).filter(|&i| !st.nodes[i].gone) else {
                fail(dev, unique, ENODEV);
                return;
            };
            let fh = st.next_fh;
            st.next_fh += 1;
            st.files.insert(
                fh,
                OpenFile {
                    node: i,
                    queue: VecDeque::new(),
                    poll_kh: None,
                },
            );
            drop(st);
            s.wake.notify_all();
            const FOPEN_DIRECT_IO: u32 = 1;
            const FOPEN_NONSEEKABLE: u32 = 4;
            let body = Out::default()
                .u64(fh)
                .u32(FOPEN_DIRECT_IO | FOPEN_NONSEEKABLE)
                .u32(0);
            reply(dev, unique, &body.0);
        }
        op::RELEASE => {
            let fh = r.u64();
            let mut st = lock(&s.state);
            st.files.remove(&fh);
            st.parked.retain(|p| p.fh != fh);
            drop(st);
            reply(dev, unique, &[]);
        }
        op::READ => {
            let fh = r.u64();
            let _offset = r.u64();
            let size = r.u32() as usize;
            let _read_flags = r.u32();
            let _lock_owner = r.u64();
            let flags = r.u32();
            let mut st = lock(&s.state);
            let Some(f) = st.files.get_mut(&fh) else {
                fail(dev, unique, EIO);
                return;
            };
            if let Some(report) = f.queue.pop_front() {
                reply(dev, unique, &report[..report.len().min(size)]);
                return;
            }
            let node = f.node;
            if st.nodes[node].gone {
                fail(dev, unique, EIO);
            } else if flags & O_NONBLOCK != 0 {
                fail(dev, unique, EAGAIN);
            } else {
                st.parked.push(ParkedRead { unique, fh, size });
                drop(st);
                s.wake.notify_all();
            }
        }
        op::WRITE => {
            let fh = r.u64();
            let _offset = r.u64();
            let size = r.u32() as usize;
            let _write_flags = r.u32();
            let _lock_owner = r.u64();
            let _flags = r.u32();
            let _ = r.u32();
            let data = &r.rest()[..size.min(r.rest().len())];
            let mut st = lock(&s.state);
            let Some(node) = st.files.get(&fh).map(|f| f.node) else {
                fail(dev, unique, ENODEV);
                return;
            };
            if st.nodes[node].gone {
                fail(dev, unique, ENODEV);
                return;
            }
            if data.is_empty() {
                fail(dev, unique, EINVAL);
                return;
            }
            // data[0] is the report id (0 on interfaces without ids).
            st.nodes[node].spec.device.write_output(&data[1..]);
            drop(st);
            s.wake.notify_all();
            reply(dev, unique, &Out::default().u32(size as u32).u32(0).0);
        }
        op::IOCTL => {
            let fh = r.u64();
            let _flags = r.u32();
            let cmd = r.u32();
            let _arg = r.u64();
            let _in_size = r.u32();
            let out_size = r.u32() as usize;
            let input = r.rest();
            let mut st = lock(&s.state);
            let Some(node) = st.files.get(&fh).map(|f| f.node) else {
                fail(dev, unique, ENODEV);
                return;
            };
            let n = &mut st.nodes[node];
            if n.gone {
                fail(dev, unique, ENODEV);
                return;
            }
            let answer = ioctl(&mut n.spec, cmd, input);
            drop(st);
            match answer {
                Ok((result, mut data)) => {
                    data.truncate(out_size);
                    let body = Out::default().i32(result).u32(0).u32(0).u32(0).bytes(&data);
                    reply(dev, unique, &body.0);
                }
                Err(errno) => fail(dev, unique, errno),
            }
        }
        op::POLL => {
            let fh = r.u64();
            let kh = r.u64();
            let flags = r.u32();
            const FUSE_POLL_SCHEDULE_NOTIFY: u32 = 1;
            let mut st = lock(&s.state);
            let Some(f) = st.files.get(&fh) else {
                reply(dev, unique, &Out::default().u32(POLLERR | POLLHUP).u32(0).0);
                return;
            };
            let node = f.node;
            let ready = !f.queue.is_empty();
            let mut revents = POLLOUT | POLLWRNORM;
            if ready {
                revents |= POLLIN | POLLRDNORM;
            }
            if st.nodes[node].gone {
                revents = POLLERR | POLLHUP;
            } else if !ready
                && flags & FUSE_POLL_SCHEDULE_NOTIFY != 0
                && let Some(f) = st.files.get_mut(&fh)
            {
                f.poll_kh = Some(kh);
            }
            drop(st);
            s.wake.notify_all();
            reply(dev, unique, &Out::default().u32(revents).u32(0).0);
        }
        op::INTERRUPT => {
            let target = r.u64();
            let mut st = lock(&s.state);
            if let Some(at) = st.parked.iter().position(|p| p.unique == target) {
                st.parked.remove(at);
                drop(st);
                fail(dev, target, EINTR);
            }
        }
        _ => fail(dev, unique, ENOSYS),
    }
}

/// One hidraw ioctl: `(return value, bytes copied back)`, or an errno.
fn ioctl(n: &mut HidrawNode, cmd: u32, input: &[u8]) -> Result<(i32, Vec<u8>), i32> {
    if ioc::typ(cmd) != u32::from(b'H') {
        return Err(ENOTTY);
    }
    let size = ioc::size(cmd);
    let text = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v.truncate(size);
        (v.len() as i32, v)
    };
    match ioc::nr(cmd) {
        0x01 => {
            let len = n.device.report_descriptor().len() as i32;
            Ok((0, len.to_le_bytes().to_vec()))
        }
        0x02 => {
            let d = n.device.report_descriptor();
            let mut out = (d.len() as u32).to_le_bytes().to_vec();
            out.extend_from_slice(&d);
            Ok((0, out))
        }
        0x03 => {
            let out = Out::default().u32(n.bus).u16(n.vendor).u16(n.product).0;
            Ok((0, out))
        }
        0x04 if ioc::dir(cmd) == ioc::READ => Ok(text(&n.device.name())),
        0x05 if ioc::dir(cmd) == ioc::READ => Ok(text(&n.phys)),
        0x08 if ioc::dir(cmd) == ioc::READ => Ok(text(&n.uniq)),
        0x06 => {
            // HIDIOCSFEATURE: byte 0 is the report id.
            if input.is_empty() {
                return Err(EINVAL);
            }
            if n.device.set_feature(&input[1..]) {
                Ok((input.len() as i32, Vec::new()))
            } else {
                Err(EPIPE)
            }
        }
        0x07 => {
            // HIDIOCGFEATURE: byte 0 in is the report id; out is id + report.
            let id = input.first().copied().unwrap_or(0);
            match n.device.get_feature() {
                Some(report) => {
                    let mut out = vec![id];
                    out.extend_from_slice(&report);
                    out.truncate(size);
                    Ok((out.len() as i32, out))
                }
                None => Err(EPIPE),
            }
        }
        _ => Err(ENOTTY),
    }
}

/// Moves input reports from the devices to every open file, answers parked reads, wakes
/// pollers and notices unplugs. Runs while the session lives.
fn pump(s: &Shared) {
    let mut st = lock(&s.state);
    loop {
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        let mut gone_now = Vec::new();
        let mut wait = Duration::from_millis(50);
        for i in 0..st.nodes.len() {
            if st.nodes[i].gone {
                continue;
            }
            let present =
                st.nodes[i].spec.device.present() && !s.unplugged[i].load(Ordering::SeqCst);
            if !present {
                st.nodes[i].gone = true;
                gone_now.push(st.nodes[i].spec.name.clone());
                continue;
            }
            if !st.files.values().any(|f| f.node == i) {
                continue;
            }
            while let Some(report) = st.nodes[i].spec.device.read_input() {
                for f in st.files.values_mut().filter(|f| f.node == i) {
                    if f.queue.len() == QUEUE_REPORTS {
                        f.queue.pop_front();
                    }
                    f.queue.push_back(report.clone());
                }
            }
            if let Some(after) = st.nodes[i].spec.device.poll_after() {
                wait = wait.min(after);
            }
        }
        // The node disappears before anyone hears of the unplug, as on a real key.
        if !gone_now.is_empty() {
            drop(st);
            for name in &gone_now {
                (s.on_gone)(name);
            }
            st = lock(&s.state);
        }
        let State {
            nodes,
            files,
            parked,
            ..
        } = &mut *st;
        parked.retain(|p| {
            let Some(f) = files.get_mut(&p.fh) else {
                fail(&s.dev, p.unique, EIO);
                return false;
            };
            if let Some(report) = f.queue.pop_front() {
                reply(&s.dev, p.unique, &report[..report.len().min(p.size)]);
                false
            } else if nodes[f.node].gone {
                fail(&s.dev, p.unique, EIO);
                false
            } else {
                true
            }
        });
        for f in files.values_mut() {
            if (!f.queue.is_empty() || nodes[f.node].gone)
                && let Some(kh) = f.poll_kh.take()
            {
                notify_poll(&s.dev, kh);
            }
        }
        st = s
            .wake
            .wait_timeout(st, wait)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}
