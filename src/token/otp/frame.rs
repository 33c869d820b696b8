//! The OTP HID frame codec (yubikey-protocols.md B.2–B.6), plain functions of bytes with no
//! I/O: CRC16, the 70-byte command frame and its 8-byte feature-report chunks, the status
//! report, and response chunks joined and CRC-checked.

use zeroize::Zeroizing;

use crate::token::transport::{FEATURE_REPORT_LEN, FeatureReport};

/// Payload bytes in a command frame.
pub const PAYLOAD_LEN: usize = 64;
/// `payload[64] || slot || crc16 (LE) || filler[3]`.
pub const FRAME_LEN: usize = PAYLOAD_LEN + 1 + 2 + 3;
/// Data bytes per feature report (the 8th is the flags/sequence byte).
pub const CHUNK_DATA: usize = FEATURE_REPORT_LEN - 1;
/// Chunks in a command frame (70 / 7).
pub const FRAME_CHUNKS: usize = FRAME_LEN / CHUNK_DATA;

/// Byte 7 written by the host: this report is chunk `seq` of a frame.
pub const SLOT_WRITE_FLAG: u8 = 0x80;
/// Byte 7 read back: a response chunk is ready (low 5 bits: its sequence number).
pub const RESP_PENDING_FLAG: u8 = 0x40;
/// Byte 7 read back: the key waits for a touch (low 5 bits: seconds left).
pub const RESP_TIMEOUT_WAIT_FLAG: u8 = 0x20;
pub const SEQUENCE_MASK: u8 = 0x1F;
/// Byte 7 of the report that ends a read (an invalid sequence: back to the status).
pub const DUMMY_REPORT_WRITE: u8 = 0x8F;

/// The residual of [`crc16`] over data followed by its ones-complemented CRC (LE).
pub const CRC_OK_RESIDUAL: u16 = 0xF0B8;

/// ISO 13239 CRC16 (B.5): start 0xFFFF, reflected polynomial 0x8408, no final XOR.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= b as u16;
        for _ in 0..8 {
            let lsb = crc & 1;
            crc >>= 1;
            if lsb != 0 {
                crc ^= 0x8408;
            }
        }
    }
    crc
}

/// A command frame for `slot_cmd` (B.7) with `payload` (at most 64 bytes, zero-filled).
/// The CRC covers the 64-byte payload, without the final complement.
pub fn command_frame(slot_cmd: u8, payload: &[u8]) -> Option<Zeroizing<[u8; FRAME_LEN]>> {
    if payload.len() > PAYLOAD_LEN {
        return None;
    }
    let mut f = Zeroizing::new([0u8; FRAME_LEN]);
    f[..payload.len()].copy_from_slice(payload);
    f[PAYLOAD_LEN] = slot_cmd;
    let crc = crc16(&f[..PAYLOAD_LEN]);
    f[PAYLOAD_LEN + 1..PAYLOAD_LEN + 3].copy_from_slice(&crc.to_le_bytes());
    Some(f)
}

/// The feature reports that carry `frame`: chunk `i` is `7 bytes || 0x80 | i`; all-zero
/// chunks are skipped except the first and the last (B.4).
pub fn frame_reports(frame: &[u8; FRAME_LEN]) -> Vec<Zeroizing<FeatureReport>> {
    frame
        .chunks(CHUNK_DATA)
        .enumerate()
        .filter(|(i, c)| *i == 0 || *i == FRAME_CHUNKS - 1 || c.iter().any(|&b| b != 0))
        .map(|(i, c)| {
            let mut r = Zeroizing::new([0u8; FEATURE_REPORT_LEN]);
            r[..CHUNK_DATA].copy_from_slice(c);
            r[CHUNK_DATA] = SLOT_WRITE_FLAG | i as u8;
            r
        })
        .collect()
}

/// The report that ends a read and resets the key's read state.
pub fn reset_report() -> FeatureReport {
    let mut r = [0u8; FEATURE_REPORT_LEN];
    r[CHUNK_DATA] = DUMMY_REPORT_WRITE;
    r
}

/// What byte 7 of a report read back says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportState {
    /// Busy with the last chunk written (0x80): wait before writing the next.
    Writing,
    /// Response chunk `seq` is in bytes 0–6.
    Response { seq: u8 },
    /// Waiting for a touch, `seconds` left.
    TouchWait { seconds: u8 },
    /// Idle: bytes 1–6 are the status (B.2).
    Idle,
    /// Anything else (e.g. 0x9F, a NEO starting up): keep polling.
    Other(u8),
}

pub fn report_state(r: &FeatureReport) -> ReportState {
    let b = r[CHUNK_DATA];
    if b & RESP_PENDING_FLAG != 0 {
        ReportState::Response {
            seq: b & SEQUENCE_MASK,
        }
    } else if b & SLOT_WRITE_FLAG != 0 {
        ReportState::Writing
    } else if b & RESP_TIMEOUT_WAIT_FLAG != 0 {
        ReportState::TouchWait {
            seconds: b & SEQUENCE_MASK,
        }
    } else if b == 0 {
        ReportState::Idle
    } else {
        ReportState::Other(b)
    }
}

/// Joins response chunks in sequence order (B.6).
#[derive(Default)]
pub struct ResponseReader {
    data: Zeroizing<Vec<u8>>,
    next: u8,
}

/// What one response chunk did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep reading.
    More,
    /// The sequence came back to 0 after data: the response is complete.
    Done,
}

impl ResponseReader {
    pub fn new() -> Self {
        Self::default()
    }
    /// Take a report whose state is `Response { seq }`. Chunks out of order are ignored
    /// (the key repeats the current one until it is read).
    pub fn push(&mut self, r: &FeatureReport, seq: u8) -> Step {
        if seq == 0 && !self.data.is_empty() {
            return Step::Done;
        }
        if seq == self.next {
            self.data.extend_from_slice(&r[..CHUNK_DATA]);
            self.next = self.next.wrapping_add(1);
        }
        Step::More
    }
    pub fn received(&self) -> usize {
        self.data.len()
    }
    /// The first `len` bytes, when the `len + 2` bytes with the key's CRC check out.
    pub fn finish(self, len: usize) -> Option<Zeroizing<Vec<u8>>> {
        let with_crc = self.data.get(..len + 2)?;
        if crc16(with_crc) != CRC_OK_RESIDUAL {
            return None;
        }
        Some(Zeroizing::new(with_crc[..len].to_vec()))
    }
}

/// Device side of [`ResponseReader::finish`]: `data || !crc16(data)` (LE), as the key sends.
pub fn with_device_crc(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.extend_from_slice(&(!crc16(data)).to_le_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        data_encoding::HEXLOWER_PERMISSIVE
            .decode(s.replace([' ', '|'], "").as_bytes())
            .unwrap()
    }

    #[test]
    fn the_reference_example_frame() {
        // yubikey-protocols.md B.4: an HMAC challenge to slot 0x30 with an 8-byte time step
        // padded to 64 bytes; only chunks 0, 1 and 9 go out, the CRC is 0x878c.
        let f = command_frame(0x30, &hex("00000000036 0aa2a")).unwrap();
        assert_eq!(crc16(&f[..64]), 0x878c);
        let reports: Vec<Vec<u8>> = frame_reports(&f).iter().map(|r| r.to_vec()).collect();
        assert_eq!(
            reports,
            vec![
                hex("00 00 00 00 03 60 aa |80"),
                hex("2a 00 00 00 00 00 00 |81"),
                hex("00 30 8c 87 00 00 00 |89"),
            ]
        );
    }

    #[test]
    fn zero_chunks_are_skipped_but_never_the_first_and_last() {
        let f = command_frame(0x10, &[]).unwrap();
        let seqs: Vec<u8> = frame_reports(&f).iter().map(|r| r[7]).collect();
        // The empty payload's CRC (0xFFFF over 64 zeros is not 0) sits in chunk 9.
        assert_eq!(seqs, vec![0x80, 0x89]);
        let full = command_frame(0x38, &[0xA5; 64]).unwrap();
        assert_eq!(frame_reports(&full).len(), FRAME_CHUNKS);
        assert!(command_frame(0x38, &[0; 65]).is_none());
    }

    #[test]
    fn crc_residual_checks_device_data() {
        let d = with_device_crc(b"twenty bytes of hmac");
        assert_eq!(crc16(&d), CRC_OK_RESIDUAL);
        let mut bad = d.clone();
        bad[3] ^= 1;
        assert_ne!(crc16(&bad), CRC_OK_RESIDUAL);
    }

    #[test]
    fn states_of_byte_7() {
        let r = |b: u8| [0, 0, 0, 0, 0, 0, 0, b];
        assert_eq!(report_state(&r(0)), ReportState::Idle);
        assert_eq!(report_state(&r(0x80)), ReportState::Writing);
        assert_eq!(report_state(&r(0x43)), ReportState::Response { seq: 3 });
        assert_eq!(
            report_state(&r(0x2E)),
            ReportState::TouchWait { seconds: 14 }
        );
        assert_eq!(report_state(&r(0x9F)), ReportState::Writing);
        assert_eq!(report_state(&r(0x01)), ReportState::Other(1));
    }

    #[test]
    fn response_chunks_join_in_order_and_are_crc_checked() {
        let body = with_device_crc(&[7u8; 20]);
        let mut padded = body.clone();
        padded.resize(28, 0);
        let chunk = |i: usize| {
            let mut r = [0u8; 8];
            r[..7].copy_from_slice(&padded[i * 7..i * 7 + 7]);
            r[7] = 0x40 | i as u8;
            r
        };
        let mut rd = ResponseReader::new();
        assert_eq!(rd.push(&chunk(0), 0), Step::More);
        assert_eq!(rd.push(&chunk(2), 2), Step::More, "out of order is ignored");
        for i in 1..4 {
            assert_eq!(rd.push(&chunk(i), i as u8), Step::More);
        }
        assert_eq!(rd.received(), 28);
        assert_eq!(rd.push(&[0, 0, 0, 0, 0, 0, 0, 0x40], 0), Step::Done);
        assert_eq!(&rd.finish(20).unwrap()[..], &[7u8; 20]);

        let mut rd = ResponseReader::new();
        let mut bad = chunk(1);
        bad[0] ^= 0xFF;
        rd.push(&chunk(0), 0);
        rd.push(&bad, 1);
        rd.push(&chunk(2), 2);
        rd.push(&chunk(3), 3);
        assert!(rd.finish(20).is_none(), "a corrupted chunk fails the CRC");
        assert!(ResponseReader::new().finish(20).is_none(), "too short");
    }
}
