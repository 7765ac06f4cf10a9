//! Placement policies: which backends, in which storage classes and with which
//! redundancy each file's chunks are stored, within failure domains.
//!
//! - `class`: providers and their storage classes (recorded per shard).

pub mod class;
