//! How people and programs reach a volume: the FUSE adapter (`fuse`) and its mount
//! options (`mountopts`), the mount daemon (`daemon`) and its control socket
//! (`control`), the REST API and web dashboard (`api`), the tree operations of the CLI (`ops`), creating and opening
//! volumes (`setup`), and `status`.

pub mod alerts;
pub mod api;
pub mod control;
pub mod daemon;
pub mod fuse;
pub mod mountopts;
pub mod ops;
pub mod setup;
pub mod status;
pub mod web;
