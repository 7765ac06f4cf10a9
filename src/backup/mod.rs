//! Backups: snapshots of the tree, their retention (and later jobs and schedules).

pub mod forget;
pub mod retention;
