//! cloudraid: a FUSE backup drive that erasure-codes every file across several
//! storage providers. See docs/ARCHITECTURE.md for the map of this crate.
//!
//!
//! The folders follow the data, bottom up:
//! - `store/`: the [`store::Backend`] trait over object_store (file, memory, S3, GCS,
//!   Azure), fault injection, and each backend's health;
//! - `policy/`: placement policies: storage classes, failure domains, where each
//!   chunk's shards go;
//! - `data/`: the path of one chunk: chunker → keys/seal → erasure → cache → volume
//!   (encode → upload; cache → fetch any k → decode → verify);
//! - `meta/`: the index and what keeps it: the [`meta::MetaStore`] trait (sled, memory),
//!   the typed index, the metadata log on the backends, the write lease;
//! - `fs/`: the async POSIX core over both, with fsck, scrub and repair, snapshots;
//! - `backup/`: retention and schedules over the core;
//! - `front/`: how people and programs reach a volume: the FUSE adapter, the mount
//!   daemon and its control socket, the tree operations of the CLI, setup, status;
//! - `format.rs` (every persisted byte) and `config.rs` (the volume's TOML).

pub mod backup;
pub mod config;
pub mod data;
pub mod format;
pub mod front;
pub mod fs;
pub mod meta;
pub mod metrics;
pub mod policy;
pub mod store;
