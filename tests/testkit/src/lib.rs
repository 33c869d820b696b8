//! Test doubles for tapcred: the strict STS double, moto as an independent STS peer, the
//! virtual YubiKey, and a real pcscd serving it over vpcd.
pub mod ci;
pub mod fault_proxy;
pub mod hid_report;
#[cfg(target_os = "linux")]
pub mod hidraw;
pub mod moto;
#[cfg(unix)]
pub mod pcsc_stack;
pub mod sts_double;
pub mod virtual_ctaphid;
pub mod virtual_fido2;
pub mod virtual_yubikey;
#[cfg(unix)]
pub mod winscard_bridge;
