//! YubiKey OATH applet (YKOATH) over an APDU transport: PC/SC for real keys, in-memory for
//! tests. See `shared/reference/yubikey-protocols.md` part A.

use crate::error::{Error, Result};
use crate::token::{Code, CodeRequest, TokenSettings, TokenSource};
use crate::ui::Ui;

/// A YubiKey's OATH credential chosen for one `mfa_serial`.
pub struct OathSource {
    _private: (),
}

impl TokenSource for OathSource {
    fn describe(&self) -> String {
        "YubiKey OATH".to_owned()
    }
    fn code(&mut self, _req: &CodeRequest<'_>, _ui: &dyn Ui) -> Result<Code> {
        Err(Error::token("the OATH token source is not built yet"))
    }
}

/// For `tapcred_token = oath`: find the key and the account, or explain why not.
pub fn open(_settings: &TokenSettings, _mfa_serial: &str, _ui: &dyn Ui) -> Result<OathSource> {
    Err(Error::token("the OATH token source is not built yet"))
}

/// For `auto`: `Ok(None)` when no YubiKey/pcscd/matching account is there (with the reason,
/// for the final "what was tried" message); `Err` only for problems the user must fix now
/// (ambiguous accounts, several keys without `tapcred_yubikey_serial`, wrong password).
pub fn probe(
    _settings: &TokenSettings,
    _mfa_serial: &str,
    _ui: &dyn Ui,
) -> Result<Result<OathSource, String>> {
    Ok(Err("OATH: not built yet".to_owned()))
}
