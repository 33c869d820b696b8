//! The longer texts rotate prints: the commands that fix a refusal or finish an interrupted
//! rotate.

use crate::commands::shell_words::shell_word;
use crate::error::Error;
use crate::iam::AccessKeyInfo;

/// The command that finishes what an interrupted rotate left (for `doctor`).
pub fn pending_fix(subject: &str) -> String {
    format!(
        "run `tapcred rotate --profile {} --resume` to finish or undo it (IAM's list of keys is read first)",
        shell_word(subject)
    )
}

/// The profile's key is not among the user's keys.
pub(super) fn not_the_users_key(
    signer: &str,
    old_id: &str,
    user: &str,
    keys: &[AccessKeyInfo],
) -> Error {
    Error::config(format!(
        "profile \"{signer}\": its access key {old_id} is not one of IAM user {user}'s keys ({}); check the profile's keys",
        ids(keys)
    ))
}

/// Both of the user's two keys are active: no room for a new one.
pub(super) fn two_active_keys(user: &str, old_id: &str, signer: &str, other: &str) -> Error {
    Error::auth(format!(
        "IAM user {u} already has two active access keys ({old_id}, the one of profile \"{signer}\", and {o}); AWS allows two, so there is no room for a new one: if {o} is not in use anywhere, delete it (aws iam delete-access-key --user-name {u} --access-key-id {o}) and run tapcred rotate again",
        u = user,
        o = other
    ))
}

/// The user's other key is inactive, and the person did not agree to delete it.
pub(super) fn inactive_in_the_way(user: &str, other: &str, old_id: &str, profile: &str) -> Error {
    Error::usage(format!(
        "IAM user {u} has an inactive access key {o} besides {old_id}, and AWS allows two; rotate deletes it only when asked: run `tapcred rotate --profile {p} --delete-inactive`, or delete it yourself (aws iam delete-access-key --user-name {u} --access-key-id {o})",
        u = user,
        o = other,
        p = shell_word(profile)
    ))
}

fn ids(keys: &[AccessKeyInfo]) -> String {
    if keys.is_empty() {
        return "it has none".to_owned();
    }
    let v: Vec<&str> = keys.iter().map(|k| k.access_key_id.as_str()).collect();
    format!("it has {}", v.join(", "))
}
