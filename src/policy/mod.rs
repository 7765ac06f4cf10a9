//! Placement policies: which backends, in which storage classes and with which
//! redundancy each file's chunks are stored, within failure domains.
//!
//! - `class`: providers and their storage classes (recorded per shard);
//! - `place`: where the shards of one chunk go, within failure domains;
//! - `rules`: the `[[policy]]` rules, compiled, checked and matched to files;
//! - `strength`: which of two placements of a shared chunk is the stronger;
//! - `check`: what `cloudraid policy check` prints of them;
//! - `price`: what each class of each provider costs (list prices, config overrides);
//! - `cost`: what a volume costs: storage, requests, a full restore, replication.

pub mod check;
pub mod class;
pub mod cost;
pub mod place;
pub mod price;
pub mod rules;
pub mod strength;
