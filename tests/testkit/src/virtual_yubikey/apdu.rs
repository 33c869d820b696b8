//! Command-APDU parsing (short and extended forms) and the YKOATH TLV codec.

/// A parsed command APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    pub extended: bool,
}

pub(crate) const SW_OK: u16 = 0x9000;
pub(crate) const SW_WRONG_LENGTH: u16 = 0x6700;
pub(crate) const SW_SECURITY: u16 = 0x6982;
pub(crate) const SW_NO_SUCH_OBJECT: u16 = 0x6984;
pub(crate) const SW_WRONG_DATA: u16 = 0x6A80;
pub(crate) const SW_FILE_NOT_FOUND: u16 = 0x6A82;
pub(crate) const SW_NO_SPACE: u16 = 0x6A84;
pub(crate) const SW_WRONG_P1P2: u16 = 0x6B00;
pub(crate) const SW_INS_NOT_SUPPORTED: u16 = 0x6D00;
pub(crate) const SW_CLA_NOT_SUPPORTED: u16 = 0x6E00;
pub(crate) const SW_CONDITIONS: u16 = 0x6985;

/// Parse the four ISO 7816-4 cases, short and extended:
/// `CLA INS P1 P2`, `… Le`, `… Lc data [Le]`, `… 00 Le_hi Le_lo`,
/// `… 00 Lc_hi Lc_lo data [Le_hi Le_lo]`.
pub(crate) fn parse(apdu: &[u8]) -> Result<Command, u16> {
    if apdu.len() < 4 {
        return Err(SW_WRONG_LENGTH);
    }
    let (cla, ins, p1, p2) = (apdu[0], apdu[1], apdu[2], apdu[3]);
    let body = &apdu[4..];
    let mut extended = false;
    let data: Vec<u8> = match body.len() {
        0 | 1 => Vec::new(), // case 1, or case 2 short (Le)
        _ if body[0] != 0 => {
            // short Lc
            let lc = body[0] as usize;
            if body.len() == 1 + lc || body.len() == 2 + lc {
                body[1..1 + lc].to_vec()
            } else {
                return Err(SW_WRONG_LENGTH);
            }
        }
        2 => return Err(SW_WRONG_LENGTH),
        3 => {
            // case 2 extended: 00 Le_hi Le_lo
            extended = true;
            Vec::new()
        }
        _ => {
            extended = true;
            let lc = u16::from_be_bytes([body[1], body[2]]) as usize;
            let rest = &body[3..];
            if lc == 0 || !(rest.len() == lc || rest.len() == lc + 2 || rest.len() == lc + 1) {
                return Err(SW_WRONG_LENGTH);
            }
            rest[..lc].to_vec()
        }
    };
    Ok(Command {
        cla,
        ins,
        p1,
        p2,
        data,
        extended,
    })
}

/// One TLV. Tag 0x78 (PROPERTY) is the bare two bytes `78 <prop>` in YKOATH: its
/// "value" is that one byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tlv {
    pub tag: u8,
    pub value: Vec<u8>,
}

pub(crate) fn parse_tlvs(mut data: &[u8]) -> Result<Vec<Tlv>, u16> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let tag = data[0];
        data = &data[1..];
        if tag == 0x78 {
            let (&prop, rest) = data.split_first().ok_or(SW_WRONG_DATA)?;
            out.push(Tlv {
                tag,
                value: vec![prop],
            });
            data = rest;
            continue;
        }
        let (&l0, rest) = data.split_first().ok_or(SW_WRONG_DATA)?;
        data = rest;
        let len = match l0 {
            0x00..=0x7F => l0 as usize,
            0x81 => {
                let (&l, rest) = data.split_first().ok_or(SW_WRONG_DATA)?;
                data = rest;
                l as usize
            }
            0x82 => {
                if data.len() < 2 {
                    return Err(SW_WRONG_DATA);
                }
                let l = u16::from_be_bytes([data[0], data[1]]) as usize;
                data = &data[2..];
                l
            }
            _ => return Err(SW_WRONG_DATA),
        };
        if data.len() < len {
            return Err(SW_WRONG_DATA);
        }
        out.push(Tlv {
            tag,
            value: data[..len].to_vec(),
        });
        data = &data[len..];
    }
    Ok(out)
}

pub(crate) fn put_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
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

    #[test]
    fn parses_all_cases() {
        let c = parse(&[0, 0xA1, 0, 0]).unwrap();
        assert!(c.data.is_empty());
        let c = parse(&[0, 0xA1, 0, 0, 0]).unwrap();
        assert!(c.data.is_empty() && !c.extended);
        let c = parse(&[0, 0xA4, 4, 0, 2, 0xAA, 0xBB]).unwrap();
        assert_eq!(c.data, vec![0xAA, 0xBB]);
        let c = parse(&[0, 0xA4, 4, 0, 2, 0xAA, 0xBB, 0x00]).unwrap();
        assert_eq!(c.data, vec![0xAA, 0xBB]);
        let c = parse(&[0, 0xA4, 0, 1, 0, 0, 2, 0xAA, 0xBB]).unwrap();
        assert_eq!(c.data, vec![0xAA, 0xBB]);
        assert!(c.extended);
        let c = parse(&[0, 0xA4, 0, 1, 0, 0, 2, 0xAA, 0xBB, 0, 0]).unwrap();
        assert_eq!(c.data, vec![0xAA, 0xBB]);
        let c = parse(&[0, 0xA1, 0, 0, 0, 0, 0]).unwrap();
        assert!(c.data.is_empty() && c.extended);
        assert_eq!(parse(&[0, 0xA4, 4, 0, 5, 1]), Err(SW_WRONG_LENGTH));
        assert_eq!(parse(&[0, 0xA4]), Err(SW_WRONG_LENGTH));
    }

    #[test]
    fn tlv_roundtrip_and_bare_property() {
        let mut v = Vec::new();
        put_tlv(&mut v, 0x71, b"abc");
        v.extend_from_slice(&[0x78, 0x02]);
        put_tlv(&mut v, 0x75, &[7u8; 200]);
        assert_eq!(&v[5..7], &[0x78, 0x02]);
        assert_eq!(&v[7..10], &[0x75, 0x81, 200]);
        let t = parse_tlvs(&v).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].value, b"abc");
        assert_eq!(t[1].value, vec![2]);
        assert_eq!(t[2].value.len(), 200);
        assert_eq!(parse_tlvs(&[0x71, 5, 1]), Err(SW_WRONG_DATA));
    }
}
