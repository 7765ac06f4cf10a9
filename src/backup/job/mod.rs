//! Backup jobs: folders, files and databases copied into a folder of the volume
//! on a schedule, when asked, or as they change; each run planned, executed,
//! snapshotted, kept in the history and reported.

pub mod config;
pub mod databases;
pub mod dump;
pub mod history;
pub mod hooks;
pub mod notify;
pub mod run;
pub mod sched;
pub mod walk;
pub mod watch;
pub mod when;
