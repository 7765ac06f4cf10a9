//! The data path of one chunk: content-defined cutting (`chunker`), the volume's
//! keys (`keys`), compression and encryption (`seal`), k+m coding (`erasure`), the
//! chunk cache (`cache`), and the volume that stores and loads chunks (`volume`).

pub mod cache;
pub mod chunker;
pub mod erasure;
pub mod keys;
pub mod seal;
pub mod volume;
