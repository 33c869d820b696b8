//! Everything that differs between Linux, macOS and Windows, behind small functions, so the
//! rest of tapcred (the portable core) carries no `cfg` of its own. Each file holds one
//! concern with a Unix body (Linux and macOS; macOS differs only in locations, hints and
//! notifications) and a Windows body:
//!
//! - [`fs`]: private files and directories (Unix 0600/0700, `O_NOFOLLOW`, `O_CLOEXEC`,
//!   `O_NONBLOCK` so a FIFO cannot hang an open; Windows: reparse points not followed, the
//!   per-user profile's inherited ACL, a seed-file ACL check), "who owns this", capped reads
//!   of regular files only;
//! - [`terminal`]: the controlling terminal (`/dev/tty`; `CONIN$`/`CONOUT$`);
//! - [`locations`]: the home directory and the cache directory per OS;
//! - [`lock_file`]: an exclusive file lock with a deadline (sessions, serials, devices);
//! - [`pcsc`]: the "smart-card service is not running" hint per OS;
//! - [`harden`]: no core dumps while secrets are held;
//! - [`desktop`]: reaching a person without a console (notifications, a code dialog);
//! - [`stdio`]: standard output pointed at the null device while a printing library runs;
//! - [`process`]: child processes for `exec`/`serve` (spawn, signal forwarding, exit codes).

pub mod desktop;
pub mod fs;
pub mod harden;
pub mod locations;
pub mod lock_file;
pub mod pcsc;
pub mod process;
pub mod stdio;
pub mod terminal;
pub mod words;
