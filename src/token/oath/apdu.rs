//! ISO 7816 APDUs as the OATH applet needs them (yubikey-protocols.md A.1): short APDUs with
//! command chaining (CLA|0x10) for data over 255 bytes, extended-length APDUs when the key
//! supports them, and response chaining with SEND REMAINING (INS A5) on SW 61xx.
//!
//! Commands that carry keys or passwords are marked sensitive: their `Debug` (used by the
//! trace log) shows only the header and the length, and their buffers are zeroized.

use std::fmt;

use zeroize::Zeroizing;

use super::fault::OathError;

use crate::token::transport::ApduTransport;

pub const SW_OK: u16 = 0x9000;
pub const INS_SEND_REMAINING: u8 = 0xA5;
/// Largest response we accept after joining 61xx chunks (a full 64-credential
/// CALCULATE_ALL is under 6 KiB).
const MAX_RESPONSE: usize = 64 * 1024;
const MAX_CHAINED_RESPONSES: usize = 256;

/// A command APDU before encoding.
pub struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Zeroizing<Vec<u8>>,
    /// Carries a key, a password-derived value or a secret: never shown in logs.
    pub sensitive: bool,
}

impl Command {
    pub fn new(ins: u8, p1: u8, p2: u8, data: Vec<u8>) -> Command {
        Command {
            cla: 0,
            ins,
            p1,
            p2,
            data: Zeroizing::new(data),
            sensitive: false,
        }
    }
    pub fn sensitive(ins: u8, p1: u8, p2: u8, data: Vec<u8>) -> Command {
        Command {
            sensitive: true,
            ..Command::new(ins, p1, p2, data)
        }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02X} {:02X} {:02X} {:02X} ",
            self.cla, self.ins, self.p1, self.p2
        )?;
        if self.sensitive {
            write!(f, "<{} bytes redacted>", self.data.len())
        } else {
            for b in self.data.iter() {
                write!(f, "{b:02X}")?;
            }
            Ok(())
        }
    }
}

/// A response with the status word split off.
pub struct Response {
    pub data: Zeroizing<Vec<u8>>,
    pub sw: u16,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response({} bytes, SW {:04X})", self.data.len(), self.sw)
    }
}

/// Short encoding: one APDU, or several with CLA|0x10 on all but the last when the data is
/// longer than 255 bytes. A command without data gets Le = 00 (as ykman sends LIST).
pub fn encode_short(cmd: &Command) -> Vec<Zeroizing<Vec<u8>>> {
    if cmd.data.is_empty() {
        return vec![Zeroizing::new(vec![cmd.cla, cmd.ins, cmd.p1, cmd.p2, 0])];
    }
    let chunks: Vec<&[u8]> = cmd.data.chunks(255).collect();
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let cla = if i == last { cmd.cla } else { cmd.cla | 0x10 };
            let mut apdu = Zeroizing::new(Vec::with_capacity(5 + chunk.len()));
            apdu.extend_from_slice(&[cla, cmd.ins, cmd.p1, cmd.p2, chunk.len() as u8]);
            apdu.extend_from_slice(chunk);
            apdu
        })
        .collect()
}

/// Extended encoding: `CLA INS P1 P2 00 Lc_hi Lc_lo data` (no data: `… 00 00 00`, Le = max).
pub fn encode_extended(cmd: &Command) -> Zeroizing<Vec<u8>> {
    let len = cmd.data.len();
    let mut apdu = Zeroizing::new(Vec::with_capacity(7 + len));
    apdu.extend_from_slice(&[
        cmd.cla,
        cmd.ins,
        cmd.p1,
        cmd.p2,
        0,
        (len >> 8) as u8,
        len as u8,
    ]);
    apdu.extend_from_slice(&cmd.data);
    apdu
}

/// Sends commands over a transport, handling chaining both ways and counting exchanges.
pub struct ApduClient<T: ApduTransport> {
    transport: T,
    /// Largest extended APDU the key takes, when extended APDUs are in use.
    extended: Option<usize>,
    exchanged: usize,
    /// YubiKey 4.2.0–4.2.6 over USB: when the last response was longer than 54 bytes and
    /// the next command follows within 2 s, send a dummy `00 00 00 00` first (A.1).
    quirk_42: bool,
    last_long: Option<std::time::Instant>,
}

impl<T: ApduTransport> ApduClient<T> {
    pub fn new(transport: T) -> Self {
        ApduClient {
            transport,
            extended: None,
            exchanged: 0,
            quirk_42: false,
            last_long: None,
        }
    }

    /// Use extended-length APDUs of at most `max` bytes (`None`: short APDUs + chaining).
    /// Enable the YubiKey 4.2.0–4.2.6 USB workaround (see `quirk_42`).
    pub fn set_yk42_quirk(&mut self, on: bool) {
        self.quirk_42 = on;
    }

    pub fn set_extended(&mut self, max: Option<usize>) {
        self.extended = max;
    }

    pub fn extended(&self) -> Option<usize> {
        self.extended
    }

    /// APDUs sent so far (every piece of a chain and every SEND REMAINING counts).
    pub fn exchanged(&self) -> usize {
        self.exchanged
    }

    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    pub fn into_transport(self) -> T {
        self.transport
    }

    fn exchange(&mut self, apdu: &[u8]) -> Result<Response, OathError> {
        if self.quirk_42
            && self
                .last_long
                .take()
                .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(2))
        {
            self.exchanged += 1;
            // The answer to the dummy APDU is irrelevant.
            let _ = self.transport.transmit(&[0, 0, 0, 0]);
        }
        self.exchanged += 1;
        let raw = Zeroizing::new(
            self.transport
                .transmit(apdu)
                .map_err(OathError::Transport)?,
        );
        if self.quirk_42 && raw.len() > 54 + 2 {
            self.last_long = Some(std::time::Instant::now());
        }
        if raw.len() < 2 {
            return Err(OathError::Malformed(format!(
                "a {}-byte response without a status word",
                raw.len()
            )));
        }
        let n = raw.len() - 2;
        let sw = u16::from_be_bytes([raw[n], raw[n + 1]]);
        Ok(Response {
            data: Zeroizing::new(raw[..n].to_vec()),
            sw,
        })
    }

    /// Send one command; returns the joined response data and the final status word.
    pub fn send(&mut self, cmd: &Command) -> Result<Response, OathError> {
        tracing::trace!(apdu = ?cmd, "OATH command");
        let extended_fits = self
            .extended
            .is_some_and(|max| cmd.data.len() + 7 <= max && cmd.data.len() <= 0xFFFF);
        let mut resp = if extended_fits {
            self.exchange(&encode_extended(cmd))?
        } else {
            let pieces = encode_short(cmd);
            let last = pieces.len() - 1;
            let mut resp = None;
            for (i, piece) in pieces.iter().enumerate() {
                let r = self.exchange(piece)?;
                if i < last && r.sw != SW_OK {
                    tracing::trace!(sw = format_args!("{:04X}", r.sw), "chained piece refused");
                    return Ok(r);
                }
                resp = Some(r);
            }
            resp.expect("at least one piece")
        };
        let mut rounds = 0;
        while resp.sw >> 8 == 0x61 {
            rounds += 1;
            if rounds > MAX_CHAINED_RESPONSES || resp.data.len() > MAX_RESPONSE {
                return Err(OathError::Malformed(
                    "the key kept answering 61xx (more data) without end".into(),
                ));
            }
            let more = self.exchange(&[0, INS_SEND_REMAINING, 0, 0, 0])?;
            resp.data.extend_from_slice(&more.data);
            resp.sw = more.sw;
        }
        tracing::trace!(response = ?resp, "OATH response");
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays canned responses and records what was sent.
    struct Canned {
        sent: Vec<Vec<u8>>,
        replies: Vec<Vec<u8>>,
    }

    impl ApduTransport for Canned {
        fn transmit(&mut self, apdu: &[u8]) -> crate::Result<Vec<u8>> {
            self.sent.push(apdu.to_vec());
            if self.replies.is_empty() {
                return Err(crate::Error::token("no more replies"));
            }
            Ok(self.replies.remove(0))
        }
    }

    #[test]
    fn short_without_data_gets_le() {
        let cmd = Command::new(0xA1, 0, 0, vec![]);
        let enc = encode_short(&cmd);
        assert_eq!(enc.len(), 1);
        assert_eq!(&enc[0][..], &[0x00, 0xA1, 0x00, 0x00, 0x00]);
    }

    #[test]
    fn long_data_is_chained_in_255_byte_pieces() {
        let data: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        let cmd = Command::new(0x01, 0, 0, data.clone());
        let enc = encode_short(&cmd);
        assert_eq!(enc.len(), 3);
        assert_eq!(&enc[0][..5], &[0x10, 0x01, 0, 0, 255]);
        assert_eq!(&enc[1][..5], &[0x10, 0x01, 0, 0, 255]);
        assert_eq!(&enc[2][..5], &[0x00, 0x01, 0, 0, 90]);
        let joined: Vec<u8> = enc.iter().flat_map(|p| p[5..].to_vec()).collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn extended_encoding() {
        let cmd = Command::new(0xA4, 0, 1, vec![0x74, 0x08, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            &encode_extended(&cmd)[..],
            &[0, 0xA4, 0, 1, 0, 0, 10, 0x74, 8, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        let list = Command::new(0xA1, 0, 0, vec![]);
        assert_eq!(&encode_extended(&list)[..], &[0, 0xA1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn response_chaining_joins_pieces_with_send_remaining() {
        let mut t = Canned {
            sent: vec![],
            replies: vec![
                vec![1, 2, 0x61, 0x02],
                vec![3, 0x61, 0x00],
                vec![4, 0x90, 0x00],
            ],
        };
        let mut c = ApduClient::new(&mut t);
        let r = c.send(&Command::new(0xA1, 0, 0, vec![])).unwrap();
        assert_eq!(&r.data[..], &[1, 2, 3, 4]);
        assert_eq!(r.sw, SW_OK);
        assert_eq!(c.exchanged(), 3);
        assert_eq!(t.sent[1], vec![0, 0xA5, 0, 0, 0]);
        assert_eq!(t.sent[2], vec![0, 0xA5, 0, 0, 0]);
    }

    #[test]
    fn endless_61xx_is_an_error() {
        struct Endless;
        impl ApduTransport for Endless {
            fn transmit(&mut self, _: &[u8]) -> crate::Result<Vec<u8>> {
                Ok(vec![0xAA; 300].into_iter().chain([0x61, 0x00]).collect())
            }
        }
        let mut c = ApduClient::new(Endless);
        assert!(c.send(&Command::new(0xA1, 0, 0, vec![])).is_err());
    }

    #[test]
    fn refused_chain_piece_stops_the_chain() {
        let mut t = Canned {
            sent: vec![],
            replies: vec![vec![0x6A, 0x84]],
        };
        let mut c = ApduClient::new(&mut t);
        let r = c.send(&Command::new(0x01, 0, 0, vec![0; 300])).unwrap();
        assert_eq!(r.sw, 0x6A84);
        assert_eq!(t.sent.len(), 1);
    }

    #[test]
    fn yk42_quirk_sends_a_dummy_apdu_after_long_responses() {
        let mut t = Canned {
            sent: vec![],
            replies: vec![
                [vec![0xAA; 60], vec![0x90, 0x00]].concat(),
                vec![0x6D, 0x00],
                vec![0x90, 0x00],
                vec![0x90, 0x00],
            ],
        };
        let mut c = ApduClient::new(&mut t);
        c.set_yk42_quirk(true);
        c.send(&Command::new(0xA1, 0, 0, vec![])).unwrap();
        let r = c.send(&Command::new(0xA4, 0, 1, vec![1])).unwrap();
        assert_eq!(r.sw, SW_OK, "the dummy's answer is not the command's");
        c.send(&Command::new(0xA1, 0, 0, vec![])).unwrap();
        assert_eq!(t.sent[1], vec![0, 0, 0, 0]);
        assert_eq!(t.sent.len(), 4, "no dummy after a short response");
    }

    #[test]
    fn one_byte_response_is_an_error() {
        let mut t = Canned {
            sent: vec![],
            replies: vec![vec![0x90]],
        };
        let mut c = ApduClient::new(&mut t);
        assert!(c.send(&Command::new(0xA1, 0, 0, vec![])).is_err());
    }

    #[test]
    fn sensitive_debug_is_redacted() {
        let cmd = Command::sensitive(0xA3, 0, 0, vec![0x75, 0x02, 0xDE, 0xAD]);
        let s = format!("{cmd:?}");
        assert!(s.contains("redacted"), "{s}");
        assert!(!s.contains("DEAD"), "{s}");
        let open = Command::new(0xA1, 0, 0, vec![0xDE, 0xAD]);
        assert!(format!("{open:?}").contains("DEAD"));
    }
}
