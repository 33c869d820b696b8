//! Syntax rules for profile values, as STS and IAM state them. Each check returns a short
//! description of what is wrong (never the value itself when it may be sensitive); the caller
//! adds the file, profile, key and fix.

/// `\w` in the STS patterns: ASCII letters, digits and `_`.
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Length in `min..=max` and every character is a word character or one of `extra`.
fn charset(value: &str, min: usize, max: usize, extra: &str) -> Result<(), String> {
    let len = value.chars().count();
    if len < min || len > max {
        return Err(format!("is {len} characters long (must be {min}–{max})"));
    }
    if let Some(bad) = value.chars().find(|&c| !is_word(c) && !extra.contains(c)) {
        return Err(format!(
            "contains {bad:?}, which is not allowed (allowed: letters, digits and _{extra})"
        ));
    }
    Ok(())
}

/// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`, 20–2048 characters.
pub(crate) fn role_arn(value: &str) -> Result<(), String> {
    let len = value.chars().count();
    if !(20..=2048).contains(&len) {
        return Err(format!("is {len} characters long (must be 20–2048)"));
    }
    let shape = "is not an IAM role ARN (expected arn:PARTITION:iam::ACCOUNT:role/NAME with a 12-digit ACCOUNT)";
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts[..] else {
        return Err(shape.to_owned());
    };
    let partition_ok = partition
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase())
        && partition
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let name = resource.strip_prefix("role/");
    let name_ok = name.is_some_and(|n| {
        !n.is_empty() && !n.ends_with('/') && n.chars().all(|c| is_word(c) || "+=,.@-/".contains(c))
    });
    if arn != "arn" || !partition_ok || service != "iam" || !region.is_empty() || !account_ok {
        return Err(shape.to_owned());
    }
    if !name_ok {
        return Err(shape.to_owned());
    }
    Ok(())
}

/// `arn:PARTITION:rolesanywhere:REGION:ACCOUNT:KIND/ID` (KIND `trust-anchor` or `profile`);
/// the region, which Roles Anywhere's requests are signed for.
pub(crate) fn rolesanywhere_arn<'a>(value: &'a str, kind: &str) -> Result<&'a str, String> {
    let shape = || {
        format!(
            "is not a Roles Anywhere {kind} ARN (expected arn:aws:rolesanywhere:REGION:ACCOUNT:{kind}/ID)"
        )
    };
    let parts: Vec<&str> = value.trim().splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts[..] else {
        return Err(shape());
    };
    let partition_ok = partition.starts_with("aws")
        && partition
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let region_ok = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let id_ok = resource
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if arn != "arn"
        || !partition_ok
        || service != "rolesanywhere"
        || !region_ok
        || !account_ok
        || !id_ok
    {
        return Err(shape());
    }
    Ok(region)
}

/// STS `SerialNumber`: 9–256 characters of `[\w+=/:,.@-]`.
pub(crate) fn mfa_serial(value: &str) -> Result<(), String> {
    charset(value, 9, 256, "+=/:,.@-")
}

/// STS `ExternalId`: 2–1224 characters of `[\w+=,.@:/-]`.
pub(crate) fn external_id(value: &str) -> Result<(), String> {
    charset(value, 2, 1224, "+=,.@:/-")
}

/// STS `RoleSessionName`: 2–64 characters of `[\w+=,.@-]`.
pub(crate) fn role_session_name(value: &str) -> Result<(), String> {
    charset(value, 2, 64, "+=,.@-")
}

/// An integer number of seconds in `min..=max`.
pub(crate) fn duration_seconds(value: &str, min: u32, max: u32) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(n) => Err(format!("is {n}, outside {min}–{max}")),
        Err(_) => Err(format!("{value:?} is not a whole number of seconds")),
    }
}

/// A name usable as an environment variable: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn env_var_name(value: &str) -> Result<(), String> {
    let ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && value.chars().all(is_word);
    if ok {
        Ok(())
    } else {
        Err(format!("{value:?} is not an environment variable name"))
    }
}

/// Edit distance (Levenshtein, on chars), for "did you mean …?".
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Up to three of `names` close to `wanted`, closest first.
pub(crate) fn close_names<'a>(wanted: &str, names: &'a [String]) -> Vec<&'a str> {
    let lower = wanted.to_lowercase();
    let limit = (wanted.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = names
        .iter()
        .filter_map(|n| {
            let d = edit_distance(&lower, &n.to_lowercase());
            let contains = wanted.chars().count() >= 3
                && (n.to_lowercase().contains(&lower) || lower.contains(&n.to_lowercase()));
            (d <= limit || contains).then_some((d, n.as_str()))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        for good in [
            "arn:aws:iam::111111111111:role/toolkit-role",
            "arn:aws-us-gov:iam::123456789012:role/path/to/Admin_1+=,.@-",
            "arn:aws-cn:iam::123456789012:role/r",
        ] {
            assert_eq!(role_arn(good), Ok(()), "{good}");
        }
        for bad in [
            "toolkit-role",
            "arn:aws:iam::11111111111:role/toolkit-role", // 11 digits
            "arn:aws:iam::111111111111:user/toolkit-role",
            "arn:aws:sts::111111111111:role/toolkit-role",
            "arn:aws:iam:us-east-1:111111111111:role/x",
            "arn:aws:iam::111111111111:role/",
            "arn:AWS:iam::111111111111:role/xyz",
            "arn:aws:iam::111111111111:role/a b",
            "arn:aws:iam::111111111111:role/ab/",
        ] {
            assert!(role_arn(bad).is_err(), "{bad}");
        }
        let long = format!("arn:aws:iam::111111111111:role/{}", "a".repeat(2048));
        assert!(role_arn(&long).unwrap_err().contains("20–2048"));
    }

    #[test]
    fn serials_ids_names() {
        assert!(mfa_serial("arn:aws:iam::111111111111:mfa/toolkit-user").is_ok());
        assert!(mfa_serial("GAHT12345678").is_ok());
        assert!(mfa_serial("12345678").unwrap_err().contains("9–256"));
        assert!(
            mfa_serial("arn:aws:iam::1:mfa/a b")
                .unwrap_err()
                .contains("' '")
        );
        assert!(external_id("ab").is_ok());
        assert!(external_id("a").is_err());
        assert!(external_id(&"x".repeat(1225)).is_err());
        assert!(external_id("a:b/c-d").is_ok());
        assert!(role_session_name("alice@example.com").is_ok());
        assert!(role_session_name("a:b").is_err());
        assert!(role_session_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration_seconds("900", 900, 43200), Ok(900));
        assert_eq!(duration_seconds(" 43200 ", 900, 43200), Ok(43200));
        assert!(duration_seconds("899", 900, 43200).is_err());
        assert!(duration_seconds("43201", 900, 43200).is_err());
        assert!(duration_seconds("1h", 900, 43200).is_err());
        assert!(duration_seconds("-5", 900, 43200).is_err());
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("mfa", "mfa"), 0);
        let names = vec![
            "mfa".to_owned(),
            "toolkit-user".to_owned(),
            "prod".to_owned(),
        ];
        assert_eq!(close_names("mfx", &names), vec!["mfa"]);
        assert_eq!(close_names("toolkit", &names), vec!["toolkit-user"]);
        assert_eq!(close_names("MFA", &names), vec!["mfa"]);
        assert!(close_names("zzzzzzzz", &names).is_empty());
    }
}
