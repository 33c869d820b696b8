//! The boundary between a virtual USB HID interface (what the device does) and the transport
//! that carries its reports to programs (the FUSE-backed `/dev/hidrawN` in
//! [`crate::hidraw`], or a test talking to the device in memory).
//!
//! A real YubiKey has two HID interfaces that matter here, and each is one
//! [`HidInterface`]:
//! - the FIDO interface (usage page `0xF1D0`): 64-byte output reports in, 64-byte input
//!   reports out (CTAPHID), no report ids;
//! - the OTP (keyboard) interface: 8-byte feature reports (`HIDIOCSFEATURE`/`HIDIOCGFEATURE`).
//!
//! The transport calls these from one thread at a time per interface. Input reports may
//! appear later without a write (keep-alives while a touch is awaited, the answer after the
//! touch): the transport asks [`HidInterface::read_input`] again when a reader waits, and
//! [`HidInterface::poll_after`] says how soon something may be ready.

use std::time::Duration;

/// One USB HID interface of a virtual key.
pub trait HidInterface: Send {
    /// The HID report descriptor, as `HIDIOCGRDESC` returns it.
    fn report_descriptor(&self) -> Vec<u8>;
    /// The product name the kernel would report (`HID_NAME`, `HIDIOCGRAWNAME`).
    fn name(&self) -> String;
    /// An output report the host wrote, without the leading report-id byte (hidraw's
    /// `write()` takes report id 0 first on interfaces without ids; the transport strips it).
    fn write_output(&mut self, report: &[u8]);
    /// The next input report, if one is ready. Never blocks.
    fn read_input(&mut self) -> Option<Vec<u8>>;
    /// How soon a reader that found nothing should ask again; None when nothing can come
    /// without another write.
    fn poll_after(&self) -> Option<Duration> {
        Some(Duration::from_millis(5))
    }
    /// A feature report the host set (report-id byte stripped); false: the device refused
    /// it (the ioctl fails with EPIPE, as a stalled control transfer does).
    fn set_feature(&mut self, _report: &[u8]) -> bool {
        false
    }
    /// The feature report the host reads; None: the ioctl fails (EPIPE).
    fn get_feature(&mut self) -> Option<Vec<u8>> {
        None
    }
    /// Whether the device is still plugged in; once false, reads and writes fail with ENODEV
    /// and the node disappears, as on a real unplug.
    fn present(&self) -> bool {
        true
    }
}
