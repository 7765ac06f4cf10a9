//! Backups: snapshots of the tree, their retention, and the schedule of the mount daemon (later: jobs).

pub mod forget;
pub mod retention;
pub mod schedule;
