//! Backups: snapshots of the tree, their retention, the schedule of the mount daemon, and backup jobs.

pub mod diff;
pub mod forget;
pub mod job;
pub mod protect;
pub mod retention;
pub mod schedule;
