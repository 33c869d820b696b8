//! FIDO2 authenticators over raw HID, for the vault's `hmac-secret` unlocker
//! ([`crate::vault::fido2`]). The only file that uses `ctap-hid-fido2`.
//!
//! - **Linux, macOS:** `ctap-hid-fido2` over hidapi (hidraw on Linux, IOKit on macOS). The
//!   adapter is deliberately thin: list the FIDO HID interfaces (usage page 0xF1D0), open the
//!   one plugged in, and map four calls (GetInfo, getPINRetries, MakeCredential and
//!   GetAssertion with `hmac-secret`) onto [`Fido2Device`]. The crate does the CTAPHID
//!   framing, CBOR, and the ECDH key agreement that encrypts the salt and the output.
//!   Its console output is switched off (no keep-alive text) and whatever it still prints
//!   goes to stderr (stdout may carry `credential_process` JSON), and its panics (hidapi failing to start, a malformed
//!   answer sliced out of range) are caught and turned into one clear error.
//! - **Windows:** since Windows 10 1903 raw FIDO HID access is reserved to administrators and
//!   ordinary programs must go through `webauthn.dll`; this version does not, so FIDO2
//!   unlock says clearly that it is not available there (the crate is not even built).

use crate::error::Result;
use crate::vault::fido2::Fido2Device;

#[cfg(not(windows))]
pub fn open_authenticator() -> Result<Option<Box<dyn Fido2Device>>> {
    hid::open_authenticator()
}

#[cfg(windows)]
pub fn open_authenticator() -> Result<Option<Box<dyn Fido2Device>>> {
    Err(crate::error::Error::usage(
        "FIDO2 unlock is not available on Windows in this version of tapcred (raw FIDO HID needs administrator rights there); use --unlock otp, or open the vault on Linux or macOS",
    ))
}

/// Run `f` with file descriptor 1 pointing at stderr, holding Rust's stdout lock so no other
/// thread's output is moved. The crate still `println!`s in a few places (an unknown
/// extension in an answer, a parse oddity); stdout may carry `credential_process` JSON or
/// `export` lines, so nothing from the crate may land there.
#[cfg(not(windows))]
pub fn with_stdout_on_stderr<T>(f: impl FnOnce() -> T) -> T {
    use std::io::Write;
    use std::os::fd::AsFd;
    let mut out = std::io::stdout().lock();
    let _ = out.flush();
    let saved = rustix::io::dup(std::io::stdout().as_fd()).ok();
    let moved = saved.is_some() && rustix::stdio::dup2_stdout(std::io::stderr().as_fd()).is_ok();
    let r = f();
    let _ = out.flush();
    if moved && let Some(fd) = &saved {
        let _ = rustix::stdio::dup2_stdout(fd);
    }
    r
}

/// Run `f`, turning a panic on this thread into an error, with stdout moved to stderr
/// ([`with_stdout_on_stderr`]). tapcred's panic hook exits the process, so for the
/// duration of `f` a hook is installed that stays silent for this thread and hands any
/// other thread's panic to the previous hook (which still exits).
#[cfg(not(windows))]
pub fn catch_library_panic<T>(what: &str, f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::Arc;
    let me = std::thread::current().id();
    let prev: Arc<dyn Fn(&panic::PanicHookInfo<'_>) + Send + Sync> = Arc::from(panic::take_hook());
    let for_others = prev.clone();
    panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != me {
            for_others(info);
        }
    }));
    let r = with_stdout_on_stderr(|| panic::catch_unwind(AssertUnwindSafe(f)));
    drop(panic::take_hook());
    panic::set_hook(Box::new(move |info| prev(info)));
    r.map_err(|_| format!("the FIDO2 library failed while {what}"))
}

#[cfg(not(windows))]
mod hid {
    use ctap_hid_fido2::fidokey::get_assertion::get_assertion_params::Extension as AssertionExt;
    use ctap_hid_fido2::fidokey::{
        CredentialExtension, FidoKeyHid, GetAssertionArgsBuilder, MakeCredentialArgsBuilder,
    };
    use zeroize::Zeroizing;

    use super::catch_library_panic as guarded;
    use crate::error::{Error, Result};
    use crate::vault::fido2::{Fido2Device, Fido2Error, Fido2Info, Fido2Pin, choose_one};

    type DevResult<T> = std::result::Result<T, Fido2Error>;

    /// Fresh random bytes for a clientDataHash input (tapcred checks no signature).
    fn challenge() -> [u8; 32] {
        let mut c = [0u8; 32];
        // A failing RNG only weakens a value nobody verifies; zeros are still a valid input.
        let _ = getrandom::fill(&mut c);
        c
    }

    /// The crate's errors are text; CTAP statuses appear as "0xNN CTAP..." in it.
    fn map_err(e: impl std::fmt::Display) -> Fido2Error {
        let text = e.to_string();
        if let Some(at) = text.find("0x") {
            let hex = text.get(at + 2..at + 4).unwrap_or("");
            let rest = text.get(at + 4..).unwrap_or("");
            if rest.trim_start().starts_with("CTAP")
                && let Ok(code) = u8::from_str_radix(hex, 16)
            {
                return Fido2Error::Ctap(code);
            }
        }
        Fido2Error::Transport(text)
    }

    fn cfg() -> ctap_hid_fido2::Cfg {
        let mut c = ctap_hid_fido2::Cfg::init();
        c.enable_log = false;
        c.enable_keep_alive_msg = false;
        c.keep_alive_msg = String::new();
        c.keep_alive_msg_to_stderr = true;
        c
    }

    pub(super) fn open_authenticator() -> Result<Option<Box<dyn Fido2Device>>> {
        let devs = guarded(
            "listing HID devices (hidapi could not start)",
            ctap_hid_fido2::get_fidokey_devices,
        )
        .map_err(|e| {
            Error::token(format!(
                "{e}; check that /dev/hidraw* is readable (README: udev)"
            ))
        })?;
        let names: Vec<String> = devs
            .iter()
            .map(|d| format!("{} {:04x}:{:04x}", d.product_string, d.vid, d.pid))
            .collect();
        let Some(dev) = choose_one(devs, &names)? else {
            return Ok(None);
        };
        let label = if dev.product_string.is_empty() {
            format!("{:04x}:{:04x}", dev.vid, dev.pid)
        } else {
            dev.product_string.clone()
        };
        let key = guarded("opening the authenticator", || {
            FidoKeyHid::new(std::slice::from_ref(&dev.param), &cfg())
        })
        .map_err(Error::token)?
        .map_err(|e| {
            Error::token(format!(
                "cannot open the FIDO2 authenticator \"{label}\" ({e}); on Linux your user needs access to its /dev/hidraw node (README: udev)"
            ))
        })?;
        Ok(Some(Box::new(HidAuthenticator { key, label })))
    }

    struct HidAuthenticator {
        key: FidoKeyHid,
        label: String,
    }

    impl HidAuthenticator {
        fn call<T, E: std::fmt::Display>(
            &self,
            what: &str,
            f: impl FnOnce(&FidoKeyHid) -> std::result::Result<T, E>,
        ) -> DevResult<T> {
            guarded(what, || f(&self.key))
                .map_err(Fido2Error::Transport)?
                .map_err(map_err)
        }
    }

    impl Fido2Device for HidAuthenticator {
        fn label(&self) -> String {
            self.label.clone()
        }

        fn info(&mut self) -> DevResult<Fido2Info> {
            let i = self.call("reading its info", |k| k.get_info())?;
            let opt = |name: &str| i.options.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
            Ok(Fido2Info {
                aaguid: i.aaguid.clone(),
                hmac_secret: i.extensions.iter().any(|e| e == "hmac-secret"),
                client_pin: opt("clientPin"),
                always_uv: opt("alwaysUv") == Some(true),
                make_cred_uv_not_rqd: opt("makeCredUvNotRqd") == Some(true),
            })
        }

        fn pin_retries(&mut self) -> DevResult<u32> {
            let n = self.call("reading its PIN retries", |k| k.get_pin_retries())?;
            Ok(n.max(0) as u32)
        }

        fn make_credential(&mut self, rp_id: &str, pin: Option<&Fido2Pin>) -> DevResult<Vec<u8>> {
            let challenge = challenge();
            let ext = [CredentialExtension::HmacSecret(Some(true))];
            let b = MakeCredentialArgsBuilder::new(rp_id, &challenge).extensions(&ext);
            // Without .pin()/.without_pin_and_uv() the builder would ask for built-in UV.
            let b = match pin {
                Some(p) => b.pin(p.expose()),
                None => b.without_pin_and_uv(),
            };
            let args = b.build();
            let att = self.call("making a credential", |k| {
                k.make_credential_with_args(&args)
            })?;
            let enabled = att
                .extensions
                .iter()
                .any(|e| matches!(e, CredentialExtension::HmacSecret(Some(true))));
            if !enabled {
                return Err(Fido2Error::Ctap(
                    crate::vault::fido2::status::UNSUPPORTED_EXTENSION,
                ));
            }
            Ok(att.credential_descriptor.id)
        }

        fn probe_credential(&mut self, rp_id: &str, credential_id: &[u8]) -> DevResult<()> {
            let challenge = challenge();
            let args = GetAssertionArgsBuilder::new(rp_id, &challenge)
                .credential_id(credential_id)
                .without_pin_and_uv()
                .without_up()
                .build();
            self.call("checking for the vault's credential", |k| {
                k.get_assertion_with_args(&args)
            })
            .map(drop)
        }

        fn hmac_secret(
            &mut self,
            rp_id: &str,
            credential_id: &[u8],
            salt: &[u8; 32],
            pin: Option<&Fido2Pin>,
        ) -> DevResult<Zeroizing<[u8; 32]>> {
            let challenge = challenge();
            let ext = [AssertionExt::HmacSecret(Some(*salt))];
            let b = GetAssertionArgsBuilder::new(rp_id, &challenge)
                .credential_id(credential_id)
                .extensions(&ext);
            // The builder asks for UV by default; UV changes the CredRandom used, so the mode
            // is exactly "PIN given" or "touch only".
            let b = match pin {
                Some(p) => b.pin(p.expose()),
                None => b.without_pin_and_uv(),
            };
            let args = b.build();
            let mut asserts = self.call("asking for the hmac-secret", |k| {
                k.get_assertion_with_args(&args)
            })?;
            let mut out = None;
            for a in asserts.iter_mut() {
                for e in a.extensions.iter_mut() {
                    if let AssertionExt::HmacSecret(Some(o)) = e {
                        if out.is_none() {
                            out = Some(Zeroizing::new(*o));
                        }
                        o.fill(0);
                    }
                }
            }
            out.ok_or_else(|| {
                Fido2Error::Transport("the authenticator's answer has no hmac-secret output".into())
            })
        }
    }
}
