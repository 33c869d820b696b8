//! The few things that differ per operating system, each behind a small portable API with a
//! Unix and a Windows body (DESIGN.md "platform").

pub mod process;
