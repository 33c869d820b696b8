//! The real transport: PC/SC through pcscd (Linux/BSD), CryptoTokenKit (macOS) or WinSCard.
//! Exclusive connections with a bounded retry on sharing violations, disconnect with
//! `LeaveCard` so the key keeps its state, and a remediation hint per failure.

use std::ffi::CString;
use std::time::Duration;

use pcsc::{Context, Disposition, Protocols, Scope, ShareMode};
use zeroize::Zeroizing;

use super::device::{Backend, Connection};
use super::transport::ApduTransport;
use crate::error::{Error, Result};

/// Sharing violations are retried this many times, this far apart (1 s in all).
const BUSY_RETRIES: u32 = 5;
const BUSY_DELAY: Duration = Duration::from_millis(200);
/// Receive buffer: the largest extended response plus SW.
const RECV_MAX: usize = 65536 + 2;

/// The PC/SC backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct PcscBackend;

impl PcscBackend {
    pub fn new() -> Self {
        PcscBackend
    }

    fn context(&self) -> Result<Context> {
        Context::establish(Scope::User).map_err(|e| service_error(e, None))
    }
}

/// The hint when the PC/SC service is missing, for this OS.
pub fn no_service_hint() -> &'static str {
    crate::platform::pcsc::no_service_hint()
}

/// Whether pcscd sees a card in `reader` (`None`: the service cannot tell), waiting up to
/// `settle` for a removal pcscd has not noticed yet. Used to tell a key pulled out
/// mid-command from one that gave an unexpected answer, when a client library reports both
/// the same way.
pub fn card_present(reader: &str, settle: Duration) -> Option<bool> {
    let ctx = Context::establish(Scope::User).ok()?;
    let name = CString::new(reader).ok()?;
    let mut states = [pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
    ctx.get_status_change(Duration::ZERO, &mut states).ok()?;
    let present =
        |s: pcsc::State| s.contains(pcsc::State::PRESENT) && !s.contains(pcsc::State::MUTE);
    if present(states[0].event_state()) && !settle.is_zero() {
        states[0].sync_current_state();
        match ctx.get_status_change(settle, &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(_) => return None,
        }
    }
    Some(present(states[0].event_state()))
}

fn busy_hint(reader: &str) -> String {
    format!(
        "the YubiKey in reader \"{reader}\" is held by another program; {}",
        crate::platform::pcsc::key_busy_hint()
    )
}

fn service_error(e: pcsc::Error, reader: Option<&str>) -> Error {
    service_message(e, reader).with_source(e)
}

fn service_message(e: pcsc::Error, reader: Option<&str>) -> Error {
    match e {
        pcsc::Error::NoService | pcsc::Error::ServiceStopped => {
            Error::token(format!("cannot reach a YubiKey: {}", no_service_hint()))
                .with_reason(crate::error::Reason::ServiceMissing)
        }
        // The daemon's socket broke mid-operation: pcscd died or restarted.
        pcsc::Error::CommError => Error::token(format!(
            "reader \"{}\": {}",
            reader.unwrap_or("?"),
            crate::platform::pcsc::service_lost_hint()
        )),
        pcsc::Error::SharingViolation => Error::token(busy_hint(reader.unwrap_or("?"))),
        pcsc::Error::RemovedCard
        | pcsc::Error::NoSmartcard
        | pcsc::Error::ResetCard
        | pcsc::Error::UnknownReader
        | pcsc::Error::ReaderUnavailable => Error::token(format!(
            "the YubiKey in reader \"{}\" was removed or reset during the operation; insert it and run again",
            reader.unwrap_or("?")
        )),
        other => Error::token(format!(
            "PC/SC error{}: {other}; unplug and re-insert the YubiKey and run again",
            reader
                .map(|r| format!(" on reader \"{r}\""))
                .unwrap_or_default()
        )),
    }
}

impl Backend for PcscBackend {
    fn readers(&self) -> Result<Vec<String>> {
        let ctx = self.context()?;
        match ctx.list_readers_owned() {
            Ok(names) => Ok(names
                .into_iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect()),
            Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
            Err(e) => Err(service_error(e, None)),
        }
    }

    fn otp_hid(&self) -> Option<Box<dyn crate::token::otp::OtpHidBackend>> {
        Some(Box::new(crate::token::hid::HidapiBackend::default()))
    }

    fn connect(&self, reader: &str) -> Result<Option<Box<dyn Connection>>> {
        let ctx = self.context()?;
        let name = CString::new(reader)
            .map_err(|_| Error::token(format!("reader name \"{reader}\" contains a NUL byte")))?;
        let mut attempt = 0;
        let card = loop {
            match ctx.connect(&name, ShareMode::Exclusive, Protocols::ANY) {
                Ok(card) => break card,
                // No card, or the key (and with it its reader) was just unplugged.
                Err(
                    pcsc::Error::NoSmartcard
                    | pcsc::Error::RemovedCard
                    | pcsc::Error::UnknownReader
                    | pcsc::Error::ReaderUnavailable,
                ) => return Ok(None),
                // Busy (another program), or a card being inserted/removed right now:
                // retry a bounded number of times.
                Err(
                    e @ (pcsc::Error::SharingViolation
                    | pcsc::Error::NotTransacted
                    | pcsc::Error::ResetCard
                    | pcsc::Error::UnpoweredCard
                    | pcsc::Error::UnresponsiveCard),
                ) if attempt < BUSY_RETRIES => {
                    attempt += 1;
                    tracing::debug!(%reader, attempt, error = %e, "connect failed, retrying");
                    std::thread::sleep(BUSY_DELAY);
                }
                Err(e) => return Err(service_error(e, Some(reader))),
            }
        };
        let atr = card
            .status2_owned()
            .map(|s| s.atr().to_vec())
            .unwrap_or_default();
        // ATR[1] high nibble F = USB (ykman's rule); NFC links take short APDUs only.
        let usb = atr.get(1).is_some_and(|b| b & 0xF0 == 0xF0);
        Ok(Some(Box::new(PcscConnection {
            card: Some(card),
            reader: reader.to_owned(),
            extended: usb.then_some(3062),
        })))
    }
}

/// One exclusive connection; dropped with `LeaveCard` (no reset).
pub struct PcscConnection {
    card: Option<pcsc::Card>,
    reader: String,
    extended: Option<usize>,
}

impl ApduTransport for PcscConnection {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>> {
        let card = self
            .card
            .as_ref()
            .ok_or_else(|| Error::internal("PC/SC connection used after close"))?;
        let mut buf = Zeroizing::new(vec![0u8; RECV_MAX]);
        match card.transmit(apdu, &mut buf) {
            // No status word at all: the card went away mid-command (vpcd and some
            // readers report removal this way instead of SCARD_W_REMOVED_CARD).
            Ok(resp) if resp.len() < 2 => Err(Error::token(format!(
                "the YubiKey in reader \"{}\" was removed or stopped answering during the operation; insert it and run again",
                self.reader
            ))),
            Ok(resp) => Ok(resp.to_vec()),
            Err(e) => Err(service_error(e, Some(&self.reader))),
        }
    }
}

impl Connection for PcscConnection {
    fn extended_max(&self) -> Option<usize> {
        self.extended
    }
}

impl Drop for PcscConnection {
    fn drop(&mut self) {
        if let Some(card) = self.card.take()
            && let Err((_card, e)) = card.disconnect(Disposition::LeaveCard)
        {
            tracing::debug!(reader = %self.reader, error = %e, "disconnect failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::error::Reason;

    #[test]
    fn no_service_is_typed_and_keeps_the_pcsc_error() {
        for e in [pcsc::Error::NoService, pcsc::Error::ServiceStopped] {
            let err = service_error(e, None);
            assert_eq!(err.reason(), Some(Reason::ServiceMissing), "{err:?}");
            assert_eq!(err.exit_code(), 4);
            let src = err.source().expect("the PC/SC error is the source");
            assert_eq!(src.downcast_ref::<pcsc::Error>(), Some(&e));
        }
        let busy = service_error(pcsc::Error::SharingViolation, Some("r"));
        assert_eq!(busy.reason(), None, "{busy:?}");
        assert_eq!(
            busy.source().and_then(|s| s.downcast_ref::<pcsc::Error>()),
            Some(&pcsc::Error::SharingViolation)
        );
    }
}
