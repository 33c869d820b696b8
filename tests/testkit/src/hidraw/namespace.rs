//! The view a program gets of a plugged-in USB HID key, built inside a private mount
//! namespace (the process must already be in one: `unshare -m --propagation private`).
//!
//! - `/dev` becomes a tmpfs holding the usual nodes (bound from the real `/dev`) and the
//!   FUSE files bound as `/dev/hidrawN`;
//! - sysfs: libudev only accepts device directories on a real sysfs (it checks `fstatfs`
//!   for `SYSFS_MAGIC`), so each fake device directory is a bind mount of a real sysfs
//!   class-device directory with our own `uevent`, `subsystem`, `device` and `dev` mounted
//!   over its entries (a symlink can be mounted over a symlink with `open_tree` and
//!   `move_mount`); tmpfs mounts over subdirectories make room for the children;
//!   `/sys/class/hidraw` becomes a tmpfs listing only the fake `hidrawN`;
//! - a tmpfs over `/run/pcscd` keeps the host's pcscd out: the key is reachable over HID
//!   only, as a key whose CCID interface is off.
//!
//! There is no USB parent device (no `idVendor` or `product` files to mount over), so
//! hidapi reports the key as it reports a uhid device: product from `HID_NAME`, empty
//! manufacturer, interface number -1.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{
    MountFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags, mount, mount_bind,
    mount_bind_recursive, move_mount, open_tree, unmount,
};

/// The hidraw character-device major on Linux (dynamic, but 245 on the kernels here; it
/// only appears in `uevent`, nothing opens the device by number).
const HIDRAW_MAJOR: u32 = 245;

fn err(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

pub fn tmpfs(at: &Path) -> Result<(), String> {
    mount("tmpfs", at, "tmpfs", MountFlags::NOSUID, c"mode=755")
        .map_err(|e| err("mounting a tmpfs on", at, e))
}

fn bind(from: &Path, to: &Path) -> Result<(), String> {
    mount_bind(from, to).map_err(|e| err(&format!("bind-mounting {} on", from.display()), to, e))
}

/// Mount the file `content` (written under `staging`) over the existing file `over`.
fn file_over(staging: &Path, name: &str, content: &[u8], over: &Path) -> Result<(), String> {
    let f = staging.join(name);
    fs::write(&f, content).map_err(|e| err("writing", &f, e))?;
    bind(&f, over)
}

/// Mount a symlink to `target` over the existing symlink `over`.
fn symlink_over(staging: &Path, name: &str, target: &Path, over: &Path) -> Result<(), String> {
    let l = staging.join(name);
    symlink(target, &l).map_err(|e| err("creating the symlink", &l, e))?;
    let tree = open_tree(
        CWD,
        &l,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| err("open_tree", &l, e))?;
    move_mount(
        &tree,
        "",
        CWD,
        over,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| err("mounting a symlink over", over, e))
}

/// A real sysfs device directory with `uevent`, a `subsystem` link and a `power`
/// subdirectory: what a fake HID device directory is made from.
fn parent_donor() -> Result<PathBuf, String> {
    let fits = |d: &Path| {
        d.join("uevent").is_file()
            && d.join("subsystem").is_symlink()
            && d.join("power").is_dir()
            && !d.join("device").exists()
    };
    let first = Path::new("/sys/devices/virtual/mem/null");
    if fits(first) {
        return Ok(first.to_path_buf());
    }
    for class in fs::read_dir("/sys/devices/virtual").map_err(|e| e.to_string())? {
        let Ok(class) = class else { continue };
        let Ok(devs) = fs::read_dir(class.path()) else {
            continue;
        };
        for d in devs.flatten() {
            if fits(&d.path()) {
                return Ok(d.path());
            }
        }
    }
    Err("no sysfs device directory with uevent, subsystem and power/ to build on".into())
}

/// A real sysfs class-device directory with `uevent`, `subsystem` and a `device` link:
/// what a fake hidraw directory is made from.
fn child_donor() -> Result<PathBuf, String> {
    for class in fs::read_dir("/sys/class")
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let Ok(devs) = fs::read_dir(class.path()) else {
            continue;
        };
        for d in devs.flatten() {
            let Ok(real) = fs::canonicalize(d.path()) else {
                continue;
            };
            if real.join("uevent").is_file()
                && real.join("subsystem").is_symlink()
                && real.join("device").is_symlink()
            {
                return Ok(real);
            }
        }
    }
    Err("no sysfs class device with a device link to build a hidraw node on".into())
}

/// One hidraw node to show: its number, the FUSE file behind it, and the HID device's
/// identity.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub number: u32,
    pub fuse_file: PathBuf,
    pub vendor: u16,
    pub product: u16,
    pub name: String,
    pub phys: String,
    pub uniq: String,
    pub report_descriptor: Vec<u8>,
}

impl NodeView {
    pub fn dev_name(&self) -> String {
        format!("hidraw{}", self.number)
    }
}

/// Replace `/dev` with a tmpfs holding the usual nodes; `staging` is a tmpfs of ours.
pub fn private_dev(staging: &Path) -> Result<(), String> {
    let host = staging.join("hostdev");
    fs::create_dir(&host).map_err(|e| err("creating", &host, e))?;
    mount_bind_recursive("/dev", &host).map_err(|e| err("binding /dev on", &host, e))?;
    tmpfs(Path::new("/dev"))?;
    for n in [
        "null", "zero", "full", "random", "urandom", "tty", "fuse", "ptmx",
    ] {
        let from = host.join(n);
        if !from.exists() {
            continue;
        }
        let to = Path::new("/dev").join(n);
        fs::write(&to, b"").map_err(|e| err("creating", &to, e))?;
        bind(&from, &to)?;
    }
    for d in ["pts", "shm", "mqueue"] {
        let from = host.join(d);
        if !from.is_dir() {
            continue;
        }
        let to = Path::new("/dev").join(d);
        fs::create_dir(&to).map_err(|e| err("creating", &to, e))?;
        mount_bind_recursive(&from, &to).map_err(|e| err("binding", &to, e))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, Path::new("/dev").join(name)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Keep the host's pcscd out (its socket directory becomes an empty tmpfs).
pub fn hide_pcscd() -> Result<(), String> {
    let p = Path::new("/run/pcscd");
    if p.is_dir() { tmpfs(p) } else { Ok(()) }
}

/// Show `nodes` as `/dev/hidrawN` and as HID devices with hidraw children in sysfs.
/// `/sys/class/hidraw` must not have been replaced yet.
pub fn show_nodes(staging: &Path, key: &str, nodes: &[NodeView]) -> Result<(), String> {
    let parent = parent_donor()?;
    let child = child_donor()?;
    let files = staging.join("sysfiles");
    fs::create_dir_all(&files).map_err(|e| err("creating", &files, e))?;
    let base = parent.join("power");
    tmpfs(&base)?;
    let class = Path::new("/sys/class/hidraw");
    let mut links = Vec::new();
    for n in nodes {
        let dev = Path::new("/dev").join(n.dev_name());
        fs::write(&dev, b"").map_err(|e| err("creating", &dev, e))?;
        bind(&n.fuse_file, &dev)?;

        let hid = base.join(format!("{key}-hid{}", n.number));
        fs::create_dir(&hid).map_err(|e| err("creating", &hid, e))?;
        bind(&parent, &hid)?;
        let hid_id = format!("0003:{:08X}:{:08X}", n.vendor, n.product);
        let uevent = format!(
            "DRIVER=hid-generic\nHID_ID={hid_id}\nHID_NAME={}\nHID_PHYS={}\nHID_UNIQ={}\n\
             MODALIAS=hid:b0003g0001v{:08X}p{:08X}\n",
            n.name, n.phys, n.uniq, n.vendor, n.product
        );
        let tag = n.dev_name();
        file_over(
            &files,
            &format!("{tag}-hid.uevent"),
            uevent.as_bytes(),
            &hid.join("uevent"),
        )?;
        symlink_over(
            &files,
            &format!("{tag}-hid.subsystem"),
            Path::new("/sys/bus/hid"),
            &hid.join("subsystem"),
        )?;
        // hidapi reads the descriptor through the hidraw node's `device` link.
        let desc_dir = files.join(format!("{tag}-device"));
        fs::create_dir(&desc_dir).map_err(|e| err("creating", &desc_dir, e))?;
        fs::write(desc_dir.join("report_descriptor"), &n.report_descriptor)
            .map_err(|e| e.to_string())?;
        fs::write(desc_dir.join("uevent"), uevent.as_bytes()).map_err(|e| e.to_string())?;

        let holder = hid.join("power");
        tmpfs(&holder)?;
        let raw = holder.join(&tag);
        fs::create_dir(&raw).map_err(|e| err("creating", &raw, e))?;
        bind(&child, &raw)?;
        let raw_uevent = format!("MAJOR={HIDRAW_MAJOR}\nMINOR={}\nDEVNAME={tag}\n", n.number);
        file_over(
            &files,
            &format!("{tag}.uevent"),
            raw_uevent.as_bytes(),
            &raw.join("uevent"),
        )?;
        if raw.join("dev").is_file() {
            file_over(
                &files,
                &format!("{tag}.dev"),
                format!("{HIDRAW_MAJOR}:{}\n", n.number).as_bytes(),
                &raw.join("dev"),
            )?;
        }
        symlink_over(
            &files,
            &format!("{tag}.subsystem"),
            class,
            &raw.join("subsystem"),
        )?;
        symlink_over(
            &files,
            &format!("{tag}.device"),
            &desc_dir,
            &raw.join("device"),
        )?;
        links.push((tag, raw));
    }
    tmpfs(class)?;
    for (tag, raw) in links {
        symlink(&raw, class.join(&tag)).map_err(|e| err("linking", &class.join(&tag), e))?;
    }
    Ok(())
}

/// Take node `dev_name` away, as an unplug does: `/dev/hidrawN` and the class entry go.
pub fn remove_node(dev_name: &str) {
    let dev = Path::new("/dev").join(dev_name);
    let _ = unmount(&dev, UnmountFlags::DETACH);
    let _ = fs::remove_file(&dev);
    let _ = fs::remove_file(Path::new("/sys/class/hidraw").join(dev_name));
}

/// Take node `dev_name` away for a while (a key not plugged in yet): like [`remove_node`],
/// but returns where its class entry pointed so [`show_node`] can bring it back.
pub fn hide_node(dev_name: &str) -> Result<PathBuf, String> {
    let entry = Path::new("/sys/class/hidraw").join(dev_name);
    let raw = fs::read_link(&entry).map_err(|e| err("reading the link", &entry, e))?;
    remove_node(dev_name);
    Ok(raw)
}

/// Plug a hidden node in: `/dev/<dev_name>` bound to its FUSE file again and its class
/// entry back (pointing at `raw`, what [`hide_node`] returned).
pub fn show_node(dev_name: &str, fuse_file: &Path, raw: &Path) -> Result<(), String> {
    let dev = Path::new("/dev").join(dev_name);
    fs::write(&dev, b"").map_err(|e| err("creating", &dev, e))?;
    bind(fuse_file, &dev)?;
    let entry = Path::new("/sys/class/hidraw").join(dev_name);
    symlink(raw, &entry).map_err(|e| err("linking", &entry, e))
}
