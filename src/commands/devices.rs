//! `devices`: list YubiKeys and their OATH accounts.
