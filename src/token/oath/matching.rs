//! Which OATH account serves an `mfa_serial` (docs/architecture.md "Token sources"):
//! 1. the configured `tapcred_oath_account`;
//! 2. else a credential named exactly the `mfa_serial` (the aws-vault convention);
//! 3. else, for `arn:aws:iam::ACCT:mfa/NAME`, `Amazon Web Services:NAME@ACCT` (the label
//!    AWS's QR code produces) or an account part beginning `NAME@`.
//!
//! More than one candidate is an error listing them; none is an error listing the accounts
//! present. Rule 3 skips HOTP credentials (AWS virtual MFA is TOTP; calculating HOTP would
//! move its counter) and `NAME@<digits>` accounts whose digits are a different 12-digit
//! AWS account ID, so keys holding the same user name for two AWS accounts still match.

use super::name::{CredentialId, OathType};

/// One account on the key, as far as matching needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub kind: OathType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchError {
    /// `tapcred_oath_account` names an account that is not on the key.
    ConfiguredMissing {
        configured: String,
        present: Vec<String>,
    },
    /// The configured account is HOTP.
    ConfiguredHotp {
        configured: String,
    },
    Ambiguous {
        candidates: Vec<String>,
    },
    NoMatch {
        present: Vec<String>,
    },
}

/// `(ACCT, NAME)` from `arn:<partition>:iam::ACCT:mfa/[path/]NAME`.
pub fn parse_mfa_arn(mfa_serial: &str) -> Option<(&str, &str)> {
    let rest = mfa_serial.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let _partition = parts.next()?;
    if parts.next()? != "iam" {
        return None;
    }
    if !parts.next()?.is_empty() {
        return None;
    }
    let acct = parts.next()?;
    let resource = parts.next()?;
    let path = resource.strip_prefix("mfa/")?;
    let name = path.rsplit('/').next()?;
    if acct.is_empty() || name.is_empty() {
        return None;
    }
    Some((acct, name))
}

pub fn choose<'a>(
    accounts: &[Candidate<'a>],
    configured: Option<&str>,
    mfa_serial: &str,
) -> Result<&'a str, MatchError> {
    let present = || {
        accounts
            .iter()
            .map(|c| c.name.to_owned())
            .collect::<Vec<_>>()
    };
    if let Some(conf) = configured {
        return match accounts.iter().find(|c| c.name == conf) {
            Some(c) if c.kind == OathType::Hotp => Err(MatchError::ConfiguredHotp {
                configured: conf.to_owned(),
            }),
            Some(c) => Ok(c.name),
            None => Err(MatchError::ConfiguredMissing {
                configured: conf.to_owned(),
                present: present(),
            }),
        };
    }
    let totp: Vec<&Candidate<'a>> = accounts
        .iter()
        .filter(|c| c.kind == OathType::Totp)
        .collect();
    if let Some(c) = totp.iter().find(|c| c.name == mfa_serial) {
        return Ok(c.name);
    }
    if let Some((acct, user)) = parse_mfa_arn(mfa_serial) {
        let aws_label = format!("Amazon Web Services:{user}@{acct}");
        let prefix = format!("{user}@");
        let found: Vec<&str> = totp
            .iter()
            .filter(|c| {
                if c.name == aws_label {
                    return true;
                }
                let id = CredentialId::parse(c.name, OathType::Totp);
                match id.account.strip_prefix(&prefix) {
                    Some(after) => !is_other_account_id(after, acct),
                    None => false,
                }
            })
            .map(|c| c.name)
            .collect();
        match found.len() {
            0 => {}
            1 => return Ok(found[0]),
            _ => {
                return Err(MatchError::Ambiguous {
                    candidates: found.iter().map(|s| s.to_string()).collect(),
                });
            }
        }
    }
    Err(MatchError::NoMatch { present: present() })
}

fn is_other_account_id(s: &str, acct: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) && s != acct
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:iam::111111111111:mfa/alice";

    fn t(name: &str) -> Candidate<'_> {
        Candidate {
            name,
            kind: OathType::Totp,
        }
    }
    fn h(name: &str) -> Candidate<'_> {
        Candidate {
            name,
            kind: OathType::Hotp,
        }
    }

    #[test]
    fn arn_parsing() {
        assert_eq!(parse_mfa_arn(ARN), Some(("111111111111", "alice")));
        assert_eq!(
            parse_mfa_arn("arn:aws-us-gov:iam::222222222222:mfa/team/bob"),
            Some(("222222222222", "bob"))
        );
        assert_eq!(parse_mfa_arn("GAHT12345678"), None);
        assert_eq!(parse_mfa_arn("arn:aws:iam::1:user/alice"), None);
        assert_eq!(parse_mfa_arn("arn:aws:s3::1:mfa/alice"), None);
    }

    #[test]
    fn configured_account_wins_and_must_exist() {
        let accts = [
            t(ARN),
            t("Amazon Web Services:alice@111111111111"),
            t("Other:x"),
        ];
        assert_eq!(choose(&accts, Some("Other:x"), ARN), Ok("Other:x"));
        assert!(matches!(
            choose(&accts, Some("Nope"), ARN),
            Err(MatchError::ConfiguredMissing { .. })
        ));
        assert!(matches!(
            choose(&[h("H:x")], Some("H:x"), ARN),
            Err(MatchError::ConfiguredHotp { .. })
        ));
    }

    #[test]
    fn exact_mfa_serial_name_beats_labels() {
        let accts = [t("Amazon Web Services:alice@111111111111"), t(ARN)];
        assert_eq!(choose(&accts, None, ARN), Ok(ARN));
    }

    #[test]
    fn aws_label_and_prefix() {
        assert_eq!(
            choose(
                &[
                    t("Amazon Web Services:alice@111111111111"),
                    t("GitHub:alice")
                ],
                None,
                ARN
            ),
            Ok("Amazon Web Services:alice@111111111111")
        );
        assert_eq!(
            choose(&[t("Work:alice@my-alias"), t("GitHub:alice")], None, ARN),
            Ok("Work:alice@my-alias")
        );
        assert_eq!(
            choose(&[t("60/alice@111111111111")], None, ARN),
            Ok("60/alice@111111111111")
        );
    }

    #[test]
    fn other_account_ids_and_hotp_are_not_candidates() {
        let accts = [
            t("Amazon Web Services:alice@111111111111"),
            t("Amazon Web Services:alice@222222222222"),
            h("alice@111111111111"),
        ];
        assert_eq!(
            choose(&accts, None, ARN),
            Ok("Amazon Web Services:alice@111111111111")
        );
        assert!(matches!(
            choose(&[h("Amazon Web Services:alice@111111111111")], None, ARN),
            Err(MatchError::NoMatch { .. })
        ));
    }

    #[test]
    fn ambiguity_lists_candidates() {
        let accts = [
            t("Amazon Web Services:alice@111111111111"),
            t("Work:alice@corp"),
        ];
        match choose(&accts, None, ARN) {
            Err(MatchError::Ambiguous { candidates }) => {
                assert_eq!(candidates.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }

    proptest::proptest! {
        /// Whatever the names, the choice is one of the TOTP accounts (or an error), and
        /// a configured name is honoured exactly.
        #[test]
        fn choice_is_always_a_present_totp_account(
            names in proptest::collection::vec("[a-zA-Z0-9 :@/]{0,24}", 0..6),
            hotp in proptest::collection::vec(proptest::bool::ANY, 6),
            serial in "(arn:aws:iam::[0-9]{12}:mfa/[a-z]{1,5})|[a-z@:]{0,12}",
        ) {
            let accts: Vec<Candidate<'_>> = names
                .iter()
                .zip(&hotp)
                .map(|(n, h)| Candidate { name: n, kind: if *h { OathType::Hotp } else { OathType::Totp } })
                .collect();
            if let Ok(name) = choose(&accts, None, &serial) {
                proptest::prop_assert!(accts.iter().any(|c| c.name == name && c.kind == OathType::Totp));
            }
            if let Some(first) = accts.first() {
                match choose(&accts, Some(first.name), &serial) {
                    Ok(n) => proptest::prop_assert_eq!(n, first.name),
                    Err(MatchError::ConfiguredHotp { .. }) => {
                        proptest::prop_assert!(accts.iter().any(|c| c.name == first.name && c.kind == OathType::Hotp))
                    }
                    Err(e) => proptest::prop_assert!(false, "{:?}", e),
                }
            }
        }
    }

    #[test]
    fn no_match_lists_present_accounts() {
        match choose(&[t("GitHub:alice"), t("alicex@1")], None, ARN) {
            Err(MatchError::NoMatch { present }) => {
                assert_eq!(present, vec!["GitHub:alice", "alicex@1"])
            }
            other => panic!("{other:?}"),
        }
        // A non-ARN serial only matches by exact name.
        assert!(choose(&[t("alice@x")], None, "GAHT1").is_err());
    }
}
