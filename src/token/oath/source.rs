//! The token source for one YubiKey OATH credential: a code per request, reconnecting to
//! the same key (checked by its applet NAME) and asking for a touch when the account needs one.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{Session, codec, name};
use crate::clock::window_of;
use crate::error::{Error, Result};
use crate::token::device::{self, Backend};
use crate::token::{Code, CodeRequest, TokenSource};
use crate::ui::Ui;

/// A YubiKey's OATH credential chosen for one `mfa_serial`.
pub struct OathSource {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) reader: String,
    pub(super) serial: Option<u32>,
    /// The applet NAME seen when the account was chosen: a later SELECT must show the same
    /// one, or another key (or a reset applet) is in the reader now.
    pub(super) salt: Vec<u8>,
    pub(super) account: String,
    pub(super) id: Vec<u8>,
    pub(super) touch: bool,
    pub(super) period: u32,
    pub(super) key: Option<Zeroizing<[u8; 16]>>,
    pub(super) last_apdus: usize,
    /// The code CALCULATE_ALL already returned while matching (non-touch, 30 s accounts):
    /// (time step, code, APDUs that session took). Used once, for a request in that step, so
    /// a cold code costs SELECT + CALCULATE_ALL instead of a second connection.
    pub(super) matched_code: Option<(u64, Zeroizing<String>, usize)>,
}

impl std::fmt::Debug for OathSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OathSource")
            .field("reader", &self.reader)
            .field("serial", &self.serial)
            .field("account", &self.account)
            .field("touch", &self.touch)
            .field("period", &self.period)
            .field("password", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl OathSource {
    /// The credential ID on the key.
    pub fn account(&self) -> &str {
        &self.account
    }
    pub fn serial(&self) -> Option<u32> {
        self.serial
    }
    pub fn reader(&self) -> &str {
        &self.reader
    }
    pub fn requires_touch(&self) -> bool {
        self.touch
    }
    /// APDUs the last [`TokenSource::code`] call cost after connecting: a code for the window
    /// matching ran in is the matching session's SELECT + CALCULATE_ALL (+ VALIDATE when
    /// locked); any other window reconnects for SELECT + CALCULATE.
    pub fn last_apdu_count(&self) -> usize {
        self.last_apdus
    }
    fn label(&self) -> String {
        device::label(self.serial, &self.reader)
    }
    fn touch_message(&self, mfa_serial: &str) -> String {
        match self.serial {
            Some(s) => format!("Touch your YubiKey (serial {s}) for {mfa_serial}"),
            None => format!(
                "Touch your YubiKey (in reader \"{}\") for {mfa_serial}",
                self.reader
            ),
        }
    }
}

impl TokenSource for OathSource {
    fn describe(&self) -> String {
        format!("{} OATH \"{}\"", self.label(), self.account)
    }
    fn period(&self) -> u64 {
        self.period as u64
    }
    fn code(&mut self, req: &CodeRequest<'_>, ui: &dyn Ui) -> Result<Code> {
        if let Some((step, digits, apdus)) = self.matched_code.take()
            && req.at / name::DEFAULT_PERIOD as u64 == step
        {
            self.last_apdus = apdus;
            let (window_start, window_end) = window_of(req.at, self.period as u64);
            return Ok(Code {
                digits,
                window_start,
                window_end,
            });
        }
        let label = self.label();
        self.last_apdus = 0;
        let conn = self.backend.connect(&self.reader)?.ok_or_else(|| {
            Error::token(format!(
                "{label} is no longer in reader \"{}\"; insert it and run again",
                self.reader
            ))
        })?;
        let ext = conn.extended_max();
        let mut s = Session::open(conn, ext).map_err(|e| e.into_error(&label))?;
        if s.info().salt != self.salt {
            self.last_apdus = s.exchanged();
            return Err(Error::token(format!(
                "the key in reader \"{}\" is no longer {label} (or its OATH applet was reset); run again",
                self.reader
            )));
        }
        if s.locked() {
            let key = self.key.as_ref().ok_or_else(|| {
                Error::token(format!(
                    "{label}'s OATH applet now has a password; run again to be asked for it"
                ))
            })?;
            s.validate(key).map_err(|e| e.into_error(&label))?;
        }
        let challenge = codec::totp_challenge(req.at, self.period);
        let result = if self.touch {
            ui.touch_wait(&self.touch_message(req.mfa_serial));
            let r = s.calculate(&self.id, &challenge, true);
            ui.touch_done(r.is_ok());
            r
        } else {
            s.calculate(&self.id, &challenge, false)
        };
        self.last_apdus = s.exchanged();
        let t = result.map_err(|e| e.into_error(&label))?;
        let (window_start, window_end) = window_of(req.at, self.period as u64);
        Ok(Code {
            digits: t.code(),
            window_start,
            window_end,
        })
    }
}
