//! What tapcred reads from an X.509 certificate: the serial number (Roles Anywhere's
//! credential scope), the validity (doctor's expiry warning), the public key (does the key
//! file belong to it) and the SHA-256 of the DER (the session cache's identity).

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

#[derive(Debug, Clone)]
pub struct CertificateFacts {
    /// The serial number in decimal, as Roles Anywhere's credential scope wants it.
    pub serial_decimal: String,
    pub subject: String,
    pub issuer: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The SubjectPublicKeyInfo, DER.
    pub public_key_der: Vec<u8>,
    /// Lowercase hex SHA-256 of the whole certificate (DER).
    pub sha256_hex: String,
}

impl CertificateFacts {
    pub fn from_der(der: &[u8]) -> Result<CertificateFacts, String> {
        let cert =
            Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate ({e})"))?;
        let tbs = &cert.tbs_certificate;
        let at = |t: x509_cert::time::Time| {
            OffsetDateTime::from_unix_timestamp(t.to_unix_duration().as_secs() as i64)
                .map_err(|_| "a validity date out of range".to_owned())
        };
        Ok(CertificateFacts {
            serial_decimal: decimal(tbs.serial_number.as_bytes()),
            subject: tbs.subject.to_string(),
            issuer: tbs.issuer.to_string(),
            not_before: at(tbs.validity.not_before)?,
            not_after: at(tbs.validity.not_after)?,
            public_key_der: tbs
                .subject_public_key_info
                .to_der()
                .map_err(|e| format!("an unreadable public key ({e})"))?,
            sha256_hex: data_encoding::HEXLOWER.encode(&Sha256::digest(der)),
        })
    }
}

/// Every certificate of a PEM file (`-----BEGIN CERTIFICATE-----` blocks, in order), or the
/// one certificate of a DER file; each as DER.
pub fn read_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if bytes.starts_with(&[0x30]) {
        return Ok(vec![bytes.to_vec()]);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "neither PEM nor DER".to_owned())?;
    let mut out = Vec::new();
    for block in pem_blocks(text) {
        let (label, der) = x509_cert::der::pem::decode_vec(block.as_bytes())
            .map_err(|e| format!("a broken PEM block ({e})"))?;
        if label == "CERTIFICATE" {
            out.push(der);
        }
    }
    if out.is_empty() {
        return Err("no -----BEGIN CERTIFICATE----- block".to_owned());
    }
    Ok(out)
}

/// The `-----BEGIN X----- … -----END X-----` blocks of a PEM text (text between them, such
/// as openssl's "Bag Attributes", is skipped).
pub fn pem_blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let from = &rest[start..];
        let Some(end) = from.find("-----END ") else {
            break;
        };
        let after = &from[end + 9..];
        let close = after
            .find("-----")
            .map(|i| end + 9 + i + 5)
            .unwrap_or(from.len());
        out.push(&from[..close]);
        rest = &from[close..];
    }
    out
}

/// A big-endian unsigned integer in decimal.
pub fn decimal(be: &[u8]) -> String {
    let mut n: Vec<u8> = be.iter().copied().skip_while(|&b| b == 0).collect();
    if n.is_empty() {
        return "0".to_owned();
    }
    let mut digits = Vec::new();
    while !n.is_empty() {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
        let lead = n.iter().take_while(|&&b| b == 0).count();
        n.drain(..lead);
    }
    digits.reverse();
    String::from_utf8(digits).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_of_big_serials() {
        assert_eq!(decimal(&[]), "0");
        assert_eq!(decimal(&[0, 0]), "0");
        assert_eq!(decimal(&[0x01, 0x00]), "256");
        assert_eq!(decimal(&[0xff; 8]), u64::MAX.to_string());
        // 2^128 - 1
        assert_eq!(
            decimal(&[0xff; 16]),
            "340282366920938463463374607431768211455"
        );
    }

    #[test]
    fn pem_blocks_skip_text_between() {
        let t = "Bag Attributes\n-----BEGIN A-----\nQQ==\n-----END A-----\nnoise\n-----BEGIN B-----\nQg==\n-----END B-----\n";
        let b = pem_blocks(t);
        assert_eq!(b.len(), 2);
        assert!(b[0].starts_with("-----BEGIN A") && b[0].ends_with("-----END A-----"));
        assert!(b[1].ends_with("-----END B-----"));
    }
}
