//! Backups: snapshots of the tree, their retention, and the schedule of the mount daemon (later: jobs).

pub mod diff;
pub mod forget;
pub mod protect;
pub mod retention;
pub mod schedule;
