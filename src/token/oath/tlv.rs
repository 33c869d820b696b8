//! BER-like TLVs as YKOATH uses them (yubikey-protocols.md A.1, A.3): one-byte tags,
//! lengths `< 0x80`, `81 xx` or `82 xx xx`, plus the bare two-byte property `78 <prop>`.
//! Every malformed input is an error, never a panic.

use std::fmt;

/// The tag that carries no length byte (`78 02` = require touch).
pub const TAG_PROPERTY: u8 = 0x78;

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

impl fmt::Debug for Tlv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be keys or HMACs: only the tag and the length are shown.
        write!(f, "Tlv({:02X}, {} bytes)", self.tag, self.value.len())
    }
}

/// Why a TLV stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlvError(pub String);

impl fmt::Display for TlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parse a whole buffer into TLVs; trailing garbage is an error.
pub fn parse(data: &[u8]) -> Result<Vec<Tlv<'_>>, TlvError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (tlv, after) = parse_one(rest)?;
        out.push(tlv);
        rest = after;
    }
    Ok(out)
}

/// Parse one TLV at the start of `data`; returns it and what follows.
pub fn parse_one(data: &[u8]) -> Result<(Tlv<'_>, &[u8]), TlvError> {
    let (&tag, rest) = data
        .split_first()
        .ok_or_else(|| TlvError("empty TLV".into()))?;
    if tag == TAG_PROPERTY {
        let (value, after) = rest
            .split_at_checked(1)
            .ok_or_else(|| TlvError("property tag 78 without its byte".into()))?;
        return Ok((Tlv { tag, value }, after));
    }
    let (&first, rest) = rest
        .split_first()
        .ok_or_else(|| TlvError(format!("tag {tag:02X} without a length")))?;
    let (len, rest) = match first {
        0..=0x7F => (first as usize, rest),
        0x81 => {
            let (&b, r) = rest
                .split_first()
                .ok_or_else(|| TlvError(format!("tag {tag:02X}: truncated 81 length")))?;
            (b as usize, r)
        }
        0x82 => {
            let (b, r) = rest
                .split_at_checked(2)
                .ok_or_else(|| TlvError(format!("tag {tag:02X}: truncated 82 length")))?;
            (((b[0] as usize) << 8) | b[1] as usize, r)
        }
        other => {
            return Err(TlvError(format!(
                "tag {tag:02X}: unsupported length byte {other:02X}"
            )));
        }
    };
    let (value, after) = rest.split_at_checked(len).ok_or_else(|| {
        TlvError(format!(
            "tag {tag:02X}: length {len} but only {} bytes left",
            rest.len()
        ))
    })?;
    Ok((Tlv { tag, value }, after))
}

/// Append one TLV. Values longer than 65535 bytes cannot be encoded (YKOATH never needs them).
pub fn write(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    assert!(len <= 0xFFFF, "TLV value too long");
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xFF {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 0x7F, 0x80, 0xFF, 0x100, 0x1234] {
            let value = vec![0xAB; len];
            let mut buf = Vec::new();
            write(&mut buf, 0x71, &value);
            let header = match len {
                0..=0x7F => 2,
                0x80..=0xFF => 3,
                _ => 4,
            };
            assert_eq!(buf.len(), header + len);
            let tlvs = parse(&buf).unwrap();
            assert_eq!(
                tlvs,
                vec![Tlv {
                    tag: 0x71,
                    value: &value
                }]
            );
        }
    }

    #[test]
    fn bare_property_has_no_length() {
        let data = [0x71, 0x01, b'a', 0x78, 0x02, 0x7A, 0x04, 0, 0, 0, 5];
        let tlvs = parse(&data).unwrap();
        assert_eq!(tlvs.len(), 3);
        assert_eq!(
            tlvs[1],
            Tlv {
                tag: 0x78,
                value: &[0x02]
            }
        );
        assert_eq!(tlvs[2].value, &[0, 0, 0, 5]);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        for bad in [
            &[0x71][..],
            &[0x71, 0x02, 0x00],
            &[0x71, 0x81],
            &[0x71, 0x82, 0x01],
            &[0x71, 0x80],
            &[0x71, 0x83, 0, 0, 1],
            &[0x78],
            &[0x71, 0x81, 0x05, 1, 2],
        ] {
            assert!(parse(bad).is_err(), "{bad:02X?} parsed");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&data);
        }

        #[test]
        fn written_tlvs_parse_back(items in proptest::collection::vec(
            (0x71u8..0x78, proptest::collection::vec(any::<u8>(), 0..400)), 0..6)) {
            let mut buf = Vec::new();
            for (tag, value) in &items {
                write(&mut buf, *tag, value);
            }
            let parsed = parse(&buf).unwrap();
            prop_assert_eq!(parsed.len(), items.len());
            for (p, (tag, value)) in parsed.iter().zip(&items) {
                prop_assert_eq!(p.tag, *tag);
                prop_assert_eq!(p.value, &value[..]);
            }
        }
    }
}
