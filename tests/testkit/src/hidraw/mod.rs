//! A virtual USB HID YubiKey that unmodified programs find: `/dev/hidrawN` files served
//! over FUSE ([`fuse`]) and the sysfs entries libudev needs ([`namespace`]), in a private
//! mount namespace owned by a key process.
//!
//! A test describes the key ([`KeySpec`]) and starts it ([`HidKey::start`]): the key process
//! (this test binary run again under `unshare -m`, entering through the test named
//! [`CHILD_TEST`], which calls [`serve_if_child`]) builds the namespace and serves the key
//! until it is dropped. Programs run inside with [`HidKey::command`] (`nsenter -m`).
//! Control files in the key's directory: `button` (a touch: consumed when the key next
//! waits for one, on its FIDO or OTP interface), `unplug` (the key is pulled out: nodes
//! fail and vanish), `plug` (a key started unplugged is plugged in), `dump` (the key writes
//! its FIDO credentials' CredRandom values to `credentials.json`), `auto-touch` (while it
//! exists the key is touched whenever it waits for a touch), `stop`. The key counts the
//! times it started waiting for a touch in `touch-asked`.
//! One key process can serve several keys ([`HidKey::start_keys`]), all visible in its
//! namespace; key `i > 0` has its control files suffixed `.i` (`button.1`, `unplug.1`).
//! Needs root, `/dev/fuse`, `unshare` and `nsenter`; [`HidKey::available`] says whether
//! this machine has them.

pub mod devices;
pub mod fuse;
pub mod namespace;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::virtual_ctaphid::{FidoControl, FidoInterface};
use crate::virtual_fido2::VirtualAuthenticator;
use crate::virtual_yubikey::{OtpSlot, VirtualYubiKey, VykConfig, VykHandle};
use devices::{OtpInterface, PID_OTP_FIDO_CCID, YUBICO_VID, YUBIKEY_NAME};
use fuse::{HidrawFs, HidrawNode};
use namespace::NodeView;

/// The env var that makes a re-run test binary the key process (holds the spec's path).
pub const CHILD_ENV: &str = "TAPCRED_HID_KEY_SPEC";
/// The test each hid test binary defines to call [`serve_if_child`].
pub const CHILD_TEST: &str = "hid_key_process";

/// One OTP slot of the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotSpec {
    /// 1 or 2.
    pub slot: u8,
    /// The HMAC-SHA1 key, hex (test keys only: the spec file is private to the test).
    pub hmac_key_hex: String,
    pub touch: bool,
}

/// What the virtual key is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySpec {
    pub serial: u32,
    pub firmware: (u8, u8, u8),
    /// Expose the OTP (keyboard) interface.
    pub otp: bool,
    /// Expose the FIDO interface (CTAPHID + CTAP2, [`crate::virtual_ctaphid`]).
    pub fido: bool,
    pub otp_slots: Vec<SlotSpec>,
    /// How long the key waits for its button (OTP slots and FIDO requests alike).
    pub touch_timeout_ms: u64,
    /// The FIDO2 PIN the key starts with (None: no PIN set).
    #[serde(default)]
    pub fido_pin: Option<String>,
    /// PIN tries left at the start (None: the full 8).
    #[serde(default)]
    pub fido_pin_retries: Option<u32>,
    /// The FIDO2 `alwaysUv` option (every assertion needs the PIN).
    #[serde(default)]
    pub always_uv: bool,
    /// The FIDO interface takes requests and never answers.
    #[serde(default)]
    pub fido_silent: bool,
    /// Plugged in from the start (false: only once its `plug` control file appears).
    #[serde(default = "plugged_in_default")]
    pub plugged_in: bool,
}

fn plugged_in_default() -> bool {
    true
}

impl Default for KeySpec {
    fn default() -> Self {
        KeySpec {
            serial: 12_345_678,
            firmware: (5, 4, 3),
            otp: true,
            fido: true,
            otp_slots: Vec::new(),
            touch_timeout_ms: 15_000,
            fido_pin: None,
            fido_pin_retries: None,
            always_uv: false,
            fido_silent: false,
            plugged_in: true,
        }
    }
}

impl KeySpec {
    pub fn slot(mut self, slot: u8, key: [u8; 20], touch: bool) -> Self {
        self.otp_slots.push(SlotSpec {
            slot,
            hmac_key_hex: key.iter().map(|b| format!("{b:02x}")).collect(),
            touch,
        });
        self
    }
}

fn hex20(s: &str) -> Result<[u8; 20], String> {
    let bytes: Result<Vec<u8>, _> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16))
        .collect();
    bytes
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "hmac_key_hex must be 40 hex digits".to_string())
}

/// A running virtual key (the key process). Dropping it stops the process.
#[derive(Debug)]
pub struct HidKey {
    child: Child,
    dir: PathBuf,
}

impl HidKey {
    /// Whether this machine can run a key: root, `/dev/fuse`, `unshare`, `nsenter`.
    /// `Err` says what is missing.
    pub fn available() -> Result<(), String> {
        if !rustix::process::geteuid().is_root() {
            return Err("root (for mount namespaces and FUSE)".into());
        }
        if !Path::new("/dev/fuse").exists() {
            return Err("/dev/fuse".into());
        }
        for tool in ["unshare", "nsenter"] {
            let ok = Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!("`{tool}` (util-linux)"));
            }
        }
        Ok(())
    }

    /// Start the key described by `spec`, its control files in `dir` (an existing private
    /// directory). Returns once `/dev/hidrawN` exist in its namespace.
    pub fn start(spec: &KeySpec, dir: &Path) -> Result<HidKey, String> {
        Self::start_keys(std::slice::from_ref(spec), dir)
    }

    /// Start one key process serving all of `specs` in one namespace (their hidraw nodes
    /// numbered in order); key `i` is addressed by the `*_key(i)` methods.
    pub fn start_keys(specs: &[KeySpec], dir: &Path) -> Result<HidKey, String> {
        let spec_path = dir.join("key.json");
        std::fs::write(
            &spec_path,
            serde_json::to_vec(specs).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--"])
            .arg(exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &spec_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("key.log")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("starting the key process: {e}"))?;
        let mut key = HidKey {
            child,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !dir.join("ready").exists() {
            if let Ok(Some(status)) = key.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("key.log")).unwrap_or_default();
                return Err(format!("the key process exited ({status}): {log}"));
            }
            if Instant::now() > deadline {
                return Err("the key process did not come up within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(key)
    }

    /// The key process's pid (its mount namespace is the key's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `program` run inside the key's namespace (sees only this key, over HID only).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.child.id().to_string())
            .args(["-m", "--"])
            .arg(program);
        c
    }

    /// Press the button: the key takes it the next time it waits for a touch.
    pub fn press(&self) {
        self.press_key(0);
    }

    /// Whether a pressed button has not yet been taken.
    pub fn button_pending(&self) -> bool {
        self.button_pending_key(0)
    }

    /// Pull the key out: open files fail, `/dev/hidrawN` vanish.
    pub fn unplug(&self) {
        self.unplug_key(0);
    }

    /// [`Self::press`] on key `i` of [`Self::start_keys`].
    pub fn press_key(&self, i: usize) {
        let _ = std::fs::write(self.dir.join(control_file("button", i)), b"");
    }

    /// [`Self::button_pending`] on key `i`.
    pub fn button_pending_key(&self, i: usize) -> bool {
        self.dir.join(control_file("button", i)).exists()
    }

    /// [`Self::unplug`] on key `i`.
    pub fn unplug_key(&self, i: usize) {
        let _ = std::fs::write(self.dir.join(control_file("unplug", i)), b"");
    }

    /// Plug in key `i`, started with `plugged_in: false`; returns once its nodes exist.
    pub fn plug_key(&self, i: usize) {
        let _ = std::fs::write(self.dir.join(control_file("plug", i)), b"");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.dir.join(control_file("plug", i)).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Touch key `i` whenever it waits for a touch (on) or only on [`Self::press_key`].
    pub fn auto_touch_key(&self, i: usize, on: bool) {
        let f = self.dir.join(control_file("auto-touch", i));
        if on {
            let _ = std::fs::write(f, b"");
        } else {
            let _ = std::fs::remove_file(f);
        }
    }

    /// [`Self::auto_touch_key`] on the first key.
    pub fn auto_touch(&self, on: bool) {
        self.auto_touch_key(0, on);
    }

    /// How many times key `i` has started waiting for a touch (blinked) so far.
    pub fn touches_asked_key(&self, i: usize) -> u32 {
        std::fs::read_to_string(self.dir.join(control_file("touch-asked", i)))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// [`Self::touches_asked_key`] on the first key.
    pub fn touches_asked(&self) -> u32 {
        self.touches_asked_key(0)
    }

    /// Every FIDO2 credential the keys hold, as
    /// `{"<id hex>": {"with_uv": "<hex>", "without_uv": "<hex>"}}` (their CredRandom values,
    /// for computing the expected `hmac-secret` output independently).
    pub fn fido_credentials(&self) -> serde_json::Value {
        let out = self.dir.join("credentials.json");
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::write(self.dir.join("dump"), b"");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !out.exists() {
            assert!(Instant::now() < deadline, "the key process wrote no dump");
            std::thread::sleep(Duration::from_millis(10));
        }
        serde_json::from_slice(&std::fs::read(&out).expect("the dump")).expect("dump JSON")
    }

    /// What the key process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("key.log")).unwrap_or_default()
    }
}

/// The control file `name` of key `i` (`button`, `button.1`, ...).
fn control_file(name: &str, i: usize) -> String {
    if i == 0 {
        name.to_owned()
    } else {
        format!("{name}.{i}")
    }
}

impl Drop for HidKey {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("stop"), b"");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In a test binary re-run as a key process: serve the key and exit. Otherwise: nothing.
pub fn serve_if_child() {
    let Some(spec) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let spec = PathBuf::from(spec);
    let code = match serve(&spec) {
        Ok(()) => 0,
        Err(e) => {
            crate::ci::notice(&format!("tapcred hid key: {e}"));
            1
        }
    };
    std::process::exit(code);
}

/// One key being served: what its control files act on.
struct Served {
    otp: VykHandle,
    fido: Option<FidoControl>,
    nodes: Vec<usize>,
    plugged_in: bool,
    unplugged: bool,
    touches_asked: u32,
}

/// Serve the keys described in the JSON file `spec_path` (a list of [`KeySpec`]; control
/// files beside it) until `stop` appears. The process must be alone in a private mount
/// namespace.
pub fn serve(spec_path: &Path) -> Result<(), String> {
    let dir = spec_path
        .parent()
        .ok_or("the spec file has no directory")?
        .to_path_buf();
    let specs: Vec<KeySpec> = serde_json::from_slice(
        &std::fs::read(spec_path).map_err(|e| format!("{}: {e}", spec_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", spec_path.display()))?;

    let staging = dir.join("ns");
    std::fs::create_dir_all(&staging).map_err(|e| e.to_string())?;
    namespace::tmpfs(&staging)?;
    let fuse_dir = staging.join("fuse");
    std::fs::create_dir(&fuse_dir).map_err(|e| e.to_string())?;

    let mut nodes = Vec::new();
    let mut views: Vec<NodeView> = Vec::new();
    let mut keys = Vec::new();
    let mut models = Vec::new();
    for (k, spec) in specs.iter().enumerate() {
        let touch_timeout = Duration::from_millis(spec.touch_timeout_ms);
        let mut config = VykConfig::new()
            .serial(spec.serial)
            .firmware(spec.firmware.0, spec.firmware.1, spec.firmware.2)
            .touch_timeout(touch_timeout);
        for s in &spec.otp_slots {
            config = config.otp_slot(s.slot, OtpSlot::hmac_sha1(hex20(&s.hmac_key_hex)?, s.touch));
        }
        let key = VirtualYubiKey::new(config);
        let handle = key.handle();
        let mut served = Served {
            otp: handle.clone(),
            fido: None,
            nodes: Vec::new(),
            plugged_in: spec.plugged_in,
            unplugged: false,
            touches_asked: 0,
        };
        let mut add = |device: Box<dyn crate::hid_report::HidInterface>| {
            let number = views.len() as u32;
            let name = format!("hidraw{number}");
            let phys = format!("usb-tapcred-virtual-{k}/input{number}");
            served.nodes.push(nodes.len());
            views.push(NodeView {
                number,
                fuse_file: fuse_dir.join(&name),
                vendor: YUBICO_VID,
                product: PID_OTP_FIDO_CCID,
                name: YUBIKEY_NAME.into(),
                phys: phys.clone(),
                uniq: String::new(),
                report_descriptor: device.report_descriptor(),
            });
            nodes.push(HidrawNode {
                name,
                bus: 3,
                vendor: YUBICO_VID,
                product: PID_OTP_FIDO_CCID,
                phys,
                uniq: String::new(),
                device,
            });
        };
        if spec.otp {
            add(Box::new(OtpInterface::new(key.otp_hid(), handle.clone())));
        }
        if spec.fido {
            let mut model = VirtualAuthenticator::new();
            model.always_uv = spec.always_uv;
            if let Some(pin) = &spec.fido_pin {
                model = model.with_pin(pin);
            }
            if let Some(n) = spec.fido_pin_retries {
                model = model.with_pin_retries(n);
            }
            let info = handle.clone();
            let (a, b, c) = spec.firmware;
            let fido = FidoInterface::new(model.clone(), touch_timeout)
                .with_device_info([a, b, c], Box::new(move |page| info.device_info(page)));
            let control = fido.control();
            control.set_silent(spec.fido_silent);
            served.fido = Some(control);
            models.push(model);
            add(Box::new(fido));
        }
        keys.push(served);
    }
    let (fs, unplugs) = HidrawFs::mount(
        &fuse_dir,
        nodes,
        Box::new(|name: &str| namespace::remove_node(name)),
    )?;
    namespace::private_dev(&staging)?;
    namespace::show_nodes(&staging, "tapcred-virtual", &views)?;
    namespace::hide_pcscd()?;
    // Keys not plugged in yet: their nodes exist but are hidden until `plug`.
    let mut hidden = std::collections::HashMap::new();
    for key in keys.iter().filter(|k| !k.plugged_in) {
        for &n in &key.nodes {
            let name = views[n].dev_name();
            hidden.insert(n, namespace::hide_node(&name)?);
        }
    }

    let ready = dir.join("ready");
    std::fs::write(dir.join("ready.tmp"), std::process::id().to_string())
        .and_then(|()| std::fs::rename(dir.join("ready.tmp"), &ready))
        .map_err(|e| e.to_string())?;

    let buttons: Vec<_> = keys.iter().map(|k| k.otp.button()).collect();
    loop {
        if dir.join("stop").exists() || fs.stopped() {
            return Ok(());
        }
        if dir.join("dump").exists() {
            dump_credentials(&models, &dir.join("credentials.json"))?;
            let _ = std::fs::remove_file(dir.join("dump"));
        }
        for (i, key) in keys.iter_mut().enumerate() {
            let otp_waiting = buttons[i].is_waiting();
            let asked = buttons[i].touch_requests() as u32
                + key.fido.as_ref().map_or(0, |f| f.touches_asked());
            if asked != key.touches_asked {
                key.touches_asked = asked;
                let count = dir.join(control_file("touch-asked", i));
                let tmp = count.with_extension("tmp");
                std::fs::write(&tmp, asked.to_string())
                    .and_then(|()| std::fs::rename(&tmp, &count))
                    .map_err(|e| e.to_string())?;
            }
            if dir.join(control_file("auto-touch", i)).exists() && !key.unplugged {
                let fido_took = key.fido.as_ref().is_some_and(|f| f.press_if_waiting());
                if !fido_took && otp_waiting {
                    buttons[i].press();
                }
            }
            let button = dir.join(control_file("button", i));
            if button.exists() && key.plugged_in && !key.unplugged {
                let fido_took = key.fido.as_ref().is_some_and(|f| f.press_if_waiting());
                let otp_took = !fido_took && buttons[i].is_waiting() && buttons[i].press();
                if fido_took || otp_took {
                    let _ = std::fs::remove_file(&button);
                }
            }
            let plug = dir.join(control_file("plug", i));
            if plug.exists() {
                if !key.plugged_in {
                    for &n in &key.nodes {
                        if let Some(raw) = hidden.remove(&n) {
                            namespace::show_node(&views[n].dev_name(), &views[n].fuse_file, &raw)?;
                        }
                    }
                    key.plugged_in = true;
                }
                let _ = std::fs::remove_file(&plug);
            }
            if dir.join(control_file("unplug", i)).exists() && !key.unplugged {
                key.unplugged = true;
                key.otp.remove();
                if let Some(f) = &key.fido {
                    f.remove();
                }
                for &n in &key.nodes {
                    unplugs[n].unplug();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Write every credential of `models` with its CredRandom values (hex) to `path`.
fn dump_credentials(models: &[VirtualAuthenticator], path: &Path) -> Result<(), String> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut all = serde_json::Map::new();
    for model in models {
        for id in model.credential_ids() {
            if let Some(r) = model.cred_randoms(&id) {
                all.insert(
                    hex(&id),
                    serde_json::json!({"with_uv": hex(&r.with_uv), "without_uv": hex(&r.without_uv)}),
                );
            }
        }
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&all).map_err(|e| e.to_string())?)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| e.to_string())
}
