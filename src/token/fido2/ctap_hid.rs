//! FIDO2 authenticators over raw HID, for the vault's `hmac-secret` unlocker. The only file
//! that uses `ctap-hid-fido2`.
//!
//! - **Linux, macOS:** `ctap-hid-fido2` over hidapi (hidraw on Linux, IOKit on macOS). The
//!   adapter is deliberately thin: list the FIDO HID interfaces (usage page 0xF1D0), open the
//!   one plugged in, and map four calls (GetInfo, getPINRetries, MakeCredential and
//!   GetAssertion with `hmac-secret`) onto [`Fido2Device`]. The crate does the CTAPHID
//!   framing, CBOR, and the ECDH key agreement that encrypts the salt and the output.
//!   Its console output is switched off (no keep-alive text) and whatever it still prints
//!   (notes about fields it does not know, such as a CTAP 2.1 key's `powerCycleState`) is
//!   discarded: stdout may carry `credential_process` JSON and stderr is for tapcred's own
//!   lines. Its panics (hidapi failing to start, a malformed answer sliced out of range)
//!   are caught and turned into one clear error, and its error texts into tapcred's words.
//! - **Sharing the key.** The crate neither checks the channel id of a reply nor reads with a
//!   timeout, and hidraw gives every input report to every process that has the device
//!   open. So every exchange opens the device afresh (nothing queued from another process's
//!   exchange) while holding the key's cross-process lock ([`crate::token::keylock`]), and
//!   runs under a deadline ([`super::SharedKey`]); the lock is the defence
//!   against crossed replies between tapcred processes, and a busy key is retried.
//! - **Windows:** since Windows 10 1903 raw FIDO HID access is reserved to administrators and
//!   ordinary programs must go through `webauthn.dll`; this version does not, so FIDO2
//!   unlock says clearly that it is not available there (the crate is not even built).

use super::Fido2Device;
use crate::env::EnvLookup;
use crate::error::Result;
#[cfg(not(windows))]
use crate::platform::stdio::with_stdout_discarded;

/// The one FIDO2 authenticator plugged in (`env` finds the folder of its lock).
#[cfg(not(windows))]
pub fn open_authenticator(env: &dyn EnvLookup) -> Result<Option<Box<dyn Fido2Device>>> {
    hid::open_authenticator(env)
}

#[cfg(windows)]
pub fn open_authenticator(_env: &dyn EnvLookup) -> Result<Option<Box<dyn Fido2Device>>> {
    Err(crate::error::Error::usage(
        "FIDO2 unlock is not available on Windows in this version of tapcred (raw FIDO HID needs administrator rights there); use --unlock otp, or open the vault on Linux or macOS",
    ))
}

/// Every FIDO HID interface plugged in (listed only: `devices`, `doctor`). Windows: none
/// (FIDO2 unlock is not available there in this version).
#[cfg(not(windows))]
pub fn list_interfaces() -> Result<Vec<super::Fido2Interface>> {
    let devs = catch_library_panic(
        "listing HID devices (hidapi could not start)",
        ctap_hid_fido2::get_fidokey_devices,
    )
    .map_err(crate::error::Error::token)?;
    Ok(devs
        .into_iter()
        .map(|d| super::Fido2Interface {
            path: match d.param {
                ctap_hid_fido2::HidParam::Path(p) => p,
                ctap_hid_fido2::HidParam::VidPid { vid, pid } => format!("{vid:04x}:{pid:04x}"),
            },
            product: d.product_string,
            vid: d.vid,
            pid: d.pid,
        })
        .collect())
}

#[cfg(windows)]
pub fn list_interfaces() -> Result<Vec<super::Fido2Interface>> {
    Ok(Vec::new())
}

/// Run `f`, turning a panic on this thread into an error, with stdout discarded
/// ([`with_stdout_discarded`], which says why).
#[cfg(not(windows))]
pub fn catch_library_panic<T>(what: &str, f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    with_stdout_discarded(|| catch_panic(what, f))
}

/// Run `f`, turning a panic on this thread into an error. tapcred's panic hook exits the
/// process, so for the duration of `f` a hook is installed that stays silent for this
/// thread and hands any other thread's panic to the previous hook (which still exits).
#[cfg(not(windows))]
fn catch_panic<T>(what: &str, f: impl FnOnce() -> T) -> std::result::Result<T, String> {
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
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    drop(panic::take_hook());
    panic::set_hook(Box::new(move |info| prev(info)));
    r.map_err(|_| format!("the FIDO2 library failed while {what}"))
}

#[cfg(not(windows))]
mod hid {
    use ctap_hid_fido2::HidParam;
    use ctap_hid_fido2::fidokey::get_assertion::get_assertion_params::Extension as AssertionExt;
    use ctap_hid_fido2::fidokey::{
        CredentialExtension, FidoKeyHid, GetAssertionArgsBuilder, MakeCredentialArgsBuilder,
    };
    use zeroize::Zeroizing;

    use super::super::{
        Deadlines, Fido2Device, Fido2Error, Fido2Info, Fido2Pin, KeyLocker, SharedKey, choose_one,
        status,
    };
    use super::catch_library_panic as guarded;
    use super::{catch_panic, with_stdout_discarded};
    use crate::env::EnvLookup;
    use crate::error::{Error, Result};
    use crate::token::keylock;

    type DevResult<T> = std::result::Result<T, Fido2Error>;

    /// Fresh random bytes for a clientDataHash input (tapcred checks no signature).
    fn challenge() -> [u8; 32] {
        let mut c = [0u8; 32];
        // A failing RNG only weakens a value nobody verifies; zeros are still a valid input.
        let _ = getrandom::fill(&mut c);
        c
    }

    /// The crate's errors are text: a CTAP status appears as "0xNN CTAP..." in it; anything
    /// else is said in tapcred's words (the crate's text goes to the debug log only).
    pub(super) fn map_err(e: impl std::fmt::Display) -> Fido2Error {
        let text = e.to_string();
        tracing::debug!(error = %text, "FIDO2 library error");
        if text.starts_with("read err") || text.contains("read error") {
            return Fido2Error::Transport(
                "its answer could not be read (was it unplugged?)".to_owned(),
            );
        }
        if text.contains("write error") {
            return Fido2Error::Transport(
                "the request could not be sent to it (was it unplugged?)".to_owned(),
            );
        }
        if text.contains("Nonce verification failed") {
            return Fido2Error::Transport(
                "its answer belonged to another program's exchange".to_owned(),
            );
        }
        if let Some(at) = text.find("0x") {
            let hex = text.get(at + 2..at + 4).unwrap_or("");
            let rest = text.get(at + 4..).unwrap_or("");
            if rest.trim_start().starts_with("CTAP")
                && let Ok(code) = u8::from_str_radix(hex, 16)
            {
                return Fido2Error::Ctap(code);
            }
        }
        Fido2Error::Transport("its answer could not be understood".to_owned())
    }

    fn cfg() -> ctap_hid_fido2::Cfg {
        let mut c = ctap_hid_fido2::Cfg::init();
        c.enable_log = false;
        c.enable_keep_alive_msg = false;
        c.keep_alive_msg = String::new();
        c.keep_alive_msg_to_stderr = true;
        c
    }

    pub(super) fn open_authenticator(env: &dyn EnvLookup) -> Result<Option<Box<dyn Fido2Device>>> {
        let devs = guarded(
            "listing HID devices (hidapi could not start)",
            ctap_hid_fido2::get_fidokey_devices,
        )
        .map_err(|e| {
            Error::token(format!(
                "{e}; {}",
                crate::platform::words::usb_access_hint()
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
        let place = match &dev.param {
            HidParam::Path(p) => p.clone(),
            HidParam::VidPid { vid, pid } => format!("{vid:04x}:{pid:04x}"),
        };
        let dir = keylock::default_dir(env);
        let who = format!("the FIDO2 authenticator \"{label}\"");
        let lock: KeyLocker =
            Box::new(move || keylock::lock(dir.as_deref(), &place, &who, keylock::WAIT));
        let key = HidAuthenticator {
            param: dev.param,
            label,
        };
        Ok(Some(Box::new(Quiet(SharedKey::new(
            key,
            Some(lock),
            Deadlines::default(),
        )))))
    }

    /// The key as the vault sees it: each exchange (run on a worker thread under a deadline
    /// by [`SharedKey`]) with stdout discarded by the calling thread ([`super`] says why).
    struct Quiet<D>(D);

    impl<D: Fido2Device> Fido2Device for Quiet<D> {
        fn label(&self) -> String {
            self.0.label()
        }
        fn info(&mut self) -> DevResult<Fido2Info> {
            with_stdout_discarded(|| self.0.info())
        }
        fn pin_retries(&mut self) -> DevResult<u32> {
            with_stdout_discarded(|| self.0.pin_retries())
        }
        fn check_pin(&mut self, rp_id: &str, pin: &Fido2Pin) -> DevResult<()> {
            with_stdout_discarded(|| self.0.check_pin(rp_id, pin))
        }
        fn make_credential(&mut self, rp_id: &str, pin: Option<&Fido2Pin>) -> DevResult<Vec<u8>> {
            with_stdout_discarded(|| self.0.make_credential(rp_id, pin))
        }
        fn probe_credential(&mut self, rp_id: &str, credential_id: &[u8]) -> DevResult<()> {
            with_stdout_discarded(|| self.0.probe_credential(rp_id, credential_id))
        }
        fn hmac_secret(
            &mut self,
            rp_id: &str,
            credential_id: &[u8],
            salt: &[u8; 32],
            pin: Option<&Fido2Pin>,
        ) -> DevResult<Zeroizing<[u8; 32]>> {
            with_stdout_discarded(|| self.0.hmac_secret(rp_id, credential_id, salt, pin))
        }
    }

    /// One FIDO HID interface. Each exchange opens it afresh ([`super`] says why).
    struct HidAuthenticator {
        param: HidParam,
        label: String,
    }

    impl HidAuthenticator {
        fn call<T, E: std::fmt::Display>(
            &self,
            what: &str,
            f: impl FnOnce(&FidoKeyHid) -> std::result::Result<T, E>,
        ) -> DevResult<T> {
            catch_panic(what, || {
                let key = FidoKeyHid::new(std::slice::from_ref(&self.param), &cfg()).map_err(
                    |_| {
                        Fido2Error::Transport(
                            "it cannot be opened (unplugged, or on Linux no access to its /dev/hidraw node)"
                                .to_owned(),
                        )
                    },
                )?;
                f(&key).map_err(map_err)
            })
            .map_err(Fido2Error::Transport)?
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

        fn check_pin(&mut self, rp_id: &str, pin: &Fido2Pin) -> DevResult<()> {
            // The crate gets a PIN token first (a wrong PIN fails there), then asks for a
            // silent assertion of no credential: "no credentials" means the PIN was right.
            let challenge = challenge();
            let args = GetAssertionArgsBuilder::new(rp_id, &challenge)
                .pin(pin.expose())
                .without_up()
                .build();
            match self.call("checking the PIN", |k| k.get_assertion_with_args(&args)) {
                Ok(_) | Err(Fido2Error::Ctap(status::NO_CREDENTIALS)) => Ok(()),
                Err(e) => Err(e),
            }
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
                return Err(Fido2Error::Ctap(status::UNSUPPORTED_EXTENSION));
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
            out.ok_or_else(|| Fido2Error::Transport("its answer has no hmac-secret output".into()))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn library_texts_become_tapcred_words() {
            assert_eq!(
                map_err("response_status err = 0x31 CTAP2_ERR_PIN_INVALID PIN Invalid."),
                Fido2Error::Ctap(0x31)
            );
            assert_eq!(
                map_err("response_status err = 0x06 CTAP1_ERR_CHANNEL_BUSY Channel busy."),
                Fido2Error::Ctap(status::CHANNEL_BUSY)
            );
            for crate_text in [
                "read err = 0xFE CTAP2_ERR_UNKNOWN",
                "Nonce verification failed",
                "write error",
                "u2f response size error?",
                "parse_cbor_client_pin_get_keyagreement error",
            ] {
                let Fido2Error::Transport(t) = map_err(crate_text) else {
                    panic!("{crate_text}: not a transport error");
                };
                assert!(
                    !t.contains("0x") && !t.contains("err ="),
                    "{crate_text} -> {t}"
                );
                assert!(
                    !t.contains("Nonce") && !t.contains("cbor"),
                    "{crate_text} -> {t}"
                );
            }
        }
    }
}
