//! Names enroll derives: the IAM device name, the OATH account.

use crate::error::{Error, Result};
use crate::token::oath::enroll::MAX_NAME_LEN;

pub(super) fn check_device_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 226
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "device name \"{name}\": IAM allows 1 to 226 characters of letters, digits and _+=,.@-; choose another --device-name"
        )))
    }
}

/// The OATH account name: the `mfa_serial` itself (the aws-vault convention, found by
/// the OATH account matching of docs/architecture.md, without `tapcred_oath_account`). AWS's QR label
/// (`Amazon Web Services:NAME@ACCT`) is always longer, so a serial that does not fit the key's
/// 64 bytes means a shorter device name.
pub(super) fn oath_name(serial: &str, device: &str) -> Result<String> {
    if serial.len() <= MAX_NAME_LEN {
        return Ok(serial.to_owned());
    }
    Err(Error::usage(format!(
        "device name \"{device}\" is too long for a YubiKey account named by its ARN ({} bytes, at most {MAX_NAME_LEN}); choose a --device-name of at most {} characters",
        serial.len(),
        MAX_NAME_LEN + device.len() - serial.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oath_names_fit_the_key() {
        let serial = "arn:aws:iam::111111111111:mfa/toolkit-user";
        assert_eq!(oath_name(serial, "toolkit-user").unwrap(), serial);
        let fits = "a".repeat(34);
        let s = format!("arn:aws:iam::111111111111:mfa/{fits}");
        assert_eq!(oath_name(&s, &fits).unwrap().len(), 64);
        let long = "a".repeat(35);
        let s = format!("arn:aws:iam::111111111111:mfa/{long}");
        let e = oath_name(&s, &long).unwrap_err();
        assert!(e.message().contains("at most 34 characters"), "{e}");
        assert!(check_device_name("a b").is_err());
        assert!(check_device_name("ok_name.1@x").is_ok());
    }
}
