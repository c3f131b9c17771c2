//! Operations: each is a function taking options and returning a typed report. The CLI and
//! the daemon only parse input and present these reports.

pub mod backup;
pub mod copies;
pub mod drill;
mod drill_physical;
pub mod evidence;
pub mod list;
pub mod recover;
pub mod repair;
pub mod report;
pub mod restore;
pub mod runbook;
pub mod running;
pub mod verify;
