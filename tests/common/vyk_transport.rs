//! tapcred's APDU transport over a virtual YubiKey in memory (no pcscd): what the PC/SC
//! transport does, including the error when the card is pulled mid-transaction.
//!
//! Included with `#[path = "common/vyk_transport.rs"] mod vyk_transport;`.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tapcred::Error;
use tapcred::token::device::Connection;
use tapcred::token::transport::ApduTransport;
use tapcred_testkit::virtual_yubikey::VirtualYubiKey;

pub struct VykConn(pub Arc<Mutex<VirtualYubiKey>>);

impl ApduTransport for VykConn {
    fn transmit(&mut self, apdu: &[u8]) -> tapcred::Result<Vec<u8>> {
        let reply = self.0.lock().unwrap().transmit(apdu);
        if reply.is_empty() {
            // What PC/SC reports when the card is pulled mid-transaction.
            return Err(Error::token(
                "the YubiKey was removed or reset during the operation; insert it and run again",
            ));
        }
        Ok(reply)
    }
}

impl Connection for VykConn {
    fn extended_max(&self) -> Option<usize> {
        Some(3062)
    }
}
