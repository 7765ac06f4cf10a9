//! cloudraid: a FUSE backup drive that erasure-codes every file across several
//! storage providers. See docs/ARCHITECTURE.md for the map of this crate.
//!
//! Layers, bottom up:
//! - `store`: the [`store::Backend`] trait over object_store (file, memory, S3, GCS, Azure);
//! - `meta`: the [`meta::MetaStore`] trait over sled, and an in-memory twin;
//! - `format`: every persisted byte; `erasure`: k+m coding of one chunk;
//! - `volume`: the chunk pipelines (encode → upload; cache → fetch any k → decode → verify);
//! - `index`: typed records over `meta`; `fs`: the async POSIX core;
//! - `fuse`: the thin fuser adapter; `daemon`, `control`, `status`, `setup`: the CLI's parts.

pub mod backup;
pub mod cache;
pub mod chunker;
pub mod config;
pub mod control;
pub mod daemon;
pub mod erasure;
pub mod format;
pub mod fs;
pub mod fuse;
pub mod health;
pub mod index;
pub mod keys;
pub mod lease;
pub mod meta;
pub mod metalog;
pub mod mountopts;
pub mod ops;
pub mod scrub;
pub mod seal;
pub mod setup;
pub mod status;
pub mod store;
pub mod volume;
