//! Every persisted byte of cloudraid: shard objects, the volume marker, object keys and
//! the records of the local index. docs/FORMAT.md is the normative description of
//! this module; change both together and bump the version of what changed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Version of the shard object layout written by this build. Version 2: the
/// payload is a sealed chunk (compressed, encrypted), not the plaintext.
pub const SHARD_FORMAT_VERSION: u16 = 2;
/// Version of the volume marker written by this build (2: encryption section).
pub const MARKER_FORMAT_VERSION: u32 = 2;
/// Version byte that prefixes every value in the local index (2: chunk records
/// carry their sealed length).
pub const INDEX_RECORD_VERSION: u8 = 2;

pub const SHARD_MAGIC: &[u8; 8] = b"CRDSHARD";
pub const SHARD_HEADER_LEN: usize = 80;
/// Name of the marker object at the root of every backend of a volume.
pub const MARKER_KEY: &str = "cloudraid.volume";

/// A volume id: 16 random bytes, shown as a UUID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VolumeId(pub [u8; 16]);

impl VolumeId {
    pub fn random() -> Self {
        VolumeId(*uuid::Uuid::new_v4().as_bytes())
    }
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s)
            .ok()
            .map(|u| VolumeId(*u.as_bytes()))
    }
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", uuid::Uuid::from_bytes(self.0))
    }
}
impl fmt::Debug for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A chunk's address: HMAC-SHA256 of its plaintext under the volume's id key
/// (SHA-256 of it in a volume without encryption). See `seal`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub fn of(data: &[u8]) -> Self {
        ChunkId(Sha256::digest(data).into())
    }
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}
impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.hex()[..16])
    }
}
impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Object key of shard `index` of a chunk, relative to the backend's root.
/// Two hex characters of fan-out keep local folders and listings manageable.
pub fn shard_key(chunk: &ChunkId, index: usize) -> String {
    let h = chunk.hex();
    format!("chunks/{}/{}.{}", &h[..2], h, index)
}

/// What a shard's object key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardName {
    pub id: ChunkId,
    /// The layout in the key of a chunk placed by a rule (`ChunkRecord::shard_key`).
    pub layout: Option<(u8, u8)>,
    pub index: usize,
}

/// The chunk, layout and shard index named by a shard's object key, if it is one.
pub fn parse_shard_key(key: &str) -> Option<ShardName> {
    let rest = key.strip_prefix("chunks/")?;
    let (fan, name) = rest.split_once('/')?;
    let (hex_id, rest) = name.split_once('.')?;
    let id = ChunkId(hex::decode(hex_id).ok()?.try_into().ok()?);
    (fan.len() == 2 && hex_id.starts_with(fan)).then_some(())?;
    let (layout, index) = match rest.split_once('.') {
        None => (None, rest),
        Some((layout, index)) => {
            let (k, m) = layout.split_once('-')?;
            (Some((k.parse().ok()?, m.parse().ok()?)), index)
        }
    };
    Some(ShardName {
        id,
        layout,
        index: index.parse().ok()?,
    })
}

/// The self-describing header at the start of every shard object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardHeader {
    pub volume: VolumeId,
    pub chunk: ChunkId,
    pub index: u8,
    pub k: u8,
    pub m: u8,
    pub chunk_len: u32,
    pub payload_len: u32,
    pub payload_crc: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("shard object is shorter than its header ({0} bytes)")]
    TooShort(usize),
    #[error("not a cloudraid shard (bad magic)")]
    BadMagic,
    #[error(
        "shard format version {0} is newer than this cloudraid understands (2); upgrade cloudraid"
    )]
    UnknownVersion(u16),
    #[error("shard format version {0} was written by an earlier development build and is not read by this one")]
    OldVersion(u16),
    #[error("shard header checksum mismatch")]
    HeaderChecksum,
    #[error("shard payload is {actual} bytes, header says {expected}")]
    PayloadLength { expected: u32, actual: usize },
    #[error("shard payload checksum mismatch")]
    PayloadChecksum,
}

impl ShardHeader {
    pub fn encode_into(&self, out: &mut [u8]) {
        assert!(out.len() >= SHARD_HEADER_LEN);
        out[0..8].copy_from_slice(SHARD_MAGIC);
        out[8..10].copy_from_slice(&SHARD_FORMAT_VERSION.to_le_bytes());
        out[10..12].copy_from_slice(&(SHARD_HEADER_LEN as u16).to_le_bytes());
        out[12..28].copy_from_slice(&self.volume.0);
        out[28..60].copy_from_slice(&self.chunk.0);
        out[60] = self.index;
        out[61] = self.k;
        out[62] = self.m;
        out[63] = 0;
        out[64..68].copy_from_slice(&self.chunk_len.to_le_bytes());
        out[68..72].copy_from_slice(&self.payload_len.to_le_bytes());
        out[72..76].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32fast::hash(&out[0..76]);
        out[76..80].copy_from_slice(&crc.to_le_bytes());
    }

    /// Parses the header and checks the payload that follows it against the header's
    /// length and checksum. Returns the header and the payload's offset.
    pub fn decode_and_verify(obj: &[u8]) -> Result<(ShardHeader, usize), HeaderError> {
        let (h, hlen) = Self::decode_head(obj)?;
        h.check_payload(&obj[hlen..])?;
        Ok((h, hlen))
    }

    /// As [`decode_and_verify`](Self::decode_and_verify), for a shard read in two
    /// parts: `head`, exactly its header, and `payload`, everything after it.
    pub fn decode_and_verify_parts(
        head: &[u8],
        payload: &[u8],
    ) -> Result<ShardHeader, HeaderError> {
        let (h, hlen) = Self::decode_head(head)?;
        if hlen != head.len() {
            // (A longer header than `head` holds was refused by `decode_head`.)
            return Err(HeaderError::TooShort(head.len()));
        }
        h.check_payload(payload)?;
        Ok(h)
    }

    /// The header at the start of `obj` (checked: magic, version, its own
    /// checksum) and its length.
    fn decode_head(obj: &[u8]) -> Result<(ShardHeader, usize), HeaderError> {
        if obj.len() < 12 {
            return Err(HeaderError::TooShort(obj.len()));
        }
        if &obj[0..8] != SHARD_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = u16::from_le_bytes([obj[8], obj[9]]);
        if version > SHARD_FORMAT_VERSION {
            return Err(HeaderError::UnknownVersion(version));
        }
        if version < SHARD_FORMAT_VERSION {
            return Err(HeaderError::OldVersion(version));
        }
        let hlen = u16::from_le_bytes([obj[10], obj[11]]) as usize;
        if hlen < SHARD_HEADER_LEN || obj.len() < hlen {
            return Err(HeaderError::TooShort(obj.len()));
        }
        let crc = u32::from_le_bytes(obj[76..80].try_into().unwrap());
        if crc32fast::hash(&obj[0..76]) != crc {
            return Err(HeaderError::HeaderChecksum);
        }
        let h = ShardHeader {
            volume: VolumeId(obj[12..28].try_into().unwrap()),
            chunk: ChunkId(obj[28..60].try_into().unwrap()),
            index: obj[60],
            k: obj[61],
            m: obj[62],
            chunk_len: u32::from_le_bytes(obj[64..68].try_into().unwrap()),
            payload_len: u32::from_le_bytes(obj[68..72].try_into().unwrap()),
            payload_crc: u32::from_le_bytes(obj[72..76].try_into().unwrap()),
        };
        Ok((h, hlen))
    }

    /// Checks a payload against the header's length and checksum.
    fn check_payload(&self, payload: &[u8]) -> Result<(), HeaderError> {
        if payload.len() != self.payload_len as usize {
            return Err(HeaderError::PayloadLength {
                expected: self.payload_len,
                actual: payload.len(),
            });
        }
        if crc32fast::hash(payload) != self.payload_crc {
            return Err(HeaderError::PayloadChecksum);
        }
        Ok(())
    }
}

/// The marker object stored at [`MARKER_KEY`] on every backend (JSON).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeMarker {
    pub format: String,
    pub version: u32,
    pub volume_id: String,
    pub volume_name: String,
    pub data_shards: u8,
    pub parity_shards: u8,
    pub backend_name: String,
    pub backend_slot: u16,
    pub created_unix: u64,
    /// How the volume's master key is kept (absent: the volume is not encrypted).
    #[serde(default)]
    pub encryption: Option<crate::data::keys::KeySection>,
}

impl VolumeMarker {
    pub const FORMAT: &'static str = "cloudraid-volume";

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("marker serialises");
        v.push(b'\n');
        v
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        let m: VolumeMarker = serde_json::from_slice(b)
            .map_err(|e| format!("volume marker is not readable JSON ({e})"))?;
        if m.format != Self::FORMAT {
            return Err(format!("volume marker has format {:?}", m.format));
        }
        if m.version > MARKER_FORMAT_VERSION {
            return Err(format!(
                "volume marker version {} is newer than this cloudraid understands ({}); upgrade cloudraid",
                m.version, MARKER_FORMAT_VERSION
            ));
        }
        if m.version < MARKER_FORMAT_VERSION {
            return Err(format!(
                "volume marker version {} was written by an earlier development build of cloudraid, whose formats this one does not read; copy the files out with that build and into a new volume",
                m.version
            ));
        }
        Ok(m)
    }
}

// ---------------------------------------------------------------------------------
// Local index: key space and records.
// ---------------------------------------------------------------------------------

/// Key prefixes of the index key space (one byte each).
pub mod keys {
    pub const SUPER: &[u8] = b"S";
    pub const INODE: u8 = b'I';
    pub const DIRENT: u8 = b'D';
    pub const DIRCOOKIE: u8 = b'E';
    pub const CONTENT: u8 = b'F';
    pub const CHUNK: u8 = b'C';
    pub const XATTR: u8 = b'X';
    pub const GC: u8 = b'G';
    pub const ORPHAN: u8 = b'O';
    pub const DEGRADED: u8 = b'R';
    /// `J` + seq: an index batch not yet in the metadata log on the backends.
    pub const JOURNAL: u8 = b'J';
    /// `L`: where the metadata log on the backends stands (`LogState`).
    pub const LOG_STATE: &[u8] = b"L";
    /// `P` + snapshot id (4, big-endian): a snapshot (`SnapshotRecord`).
    pub const SNAPSHOT: u8 = b'P';
    /// `T` + tree id (32): one directory of one or more snapshots (`TreeRecord`).
    pub const TREE: u8 = b'T';
    /// `U` + tree id: how many snapshots and trees name this tree (`TreeRefs`).
    pub const TREE_REFS: u8 = b'U';
    /// `V` + tree id: a tree nothing names any more, to be deleted (empty value).
    pub const TREE_GC: u8 = b'V';
    /// `K` + chunk id: how many file entries of snapshot trees use this chunk (`TreeRefs`).
    pub const CHUNK_TREE_REFS: u8 = b'K';
    /// `Q`: snapshot settings of the volume (`SnapshotSettings`).
    pub const SNAPSHOT_SETTINGS: &[u8] = b"Q";
    /// `H` + job name + `0x00` + start time (8, big-endian nanoseconds): one
    /// run of a backup job (`JobRunRecord`).
    pub const JOB_RUN: u8 = b'H';
    /// `N` + time (8, big-endian nanoseconds) + sequence (4, big-endian): one
    /// event of the volume's history (`EventRecord`).
    pub const EVENT: u8 = b'N';

    pub fn event(at: super::Nanos, seq: u32) -> Vec<u8> {
        let mut k = Vec::with_capacity(13);
        k.push(EVENT);
        k.extend_from_slice(&at.to_be_bytes());
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// `A` + token name: an API token (`TokenRecord`).
    pub const TOKEN: u8 = b'A';

    pub fn token(name: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(name.len() + 1);
        k.push(TOKEN);
        k.extend_from_slice(name.as_bytes());
        k
    }

    pub fn job_run(job: &str, started: super::Nanos) -> Vec<u8> {
        let mut k = job_runs(job);
        k.extend_from_slice(&started.to_be_bytes());
        k
    }

    /// The prefix of one job's runs.
    pub fn job_runs(job: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(job.len() + 10);
        k.push(JOB_RUN);
        k.extend_from_slice(job.as_bytes());
        k.push(0);
        k
    }

    pub fn tree(prefix: u8, id: &super::TreeId) -> Vec<u8> {
        let mut k = Vec::with_capacity(33);
        k.push(prefix);
        k.extend_from_slice(&id.0);
        k
    }

    pub fn ino(prefix: u8, ino: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(9);
        k.push(prefix);
        k.extend_from_slice(&ino.to_be_bytes());
        k
    }
    pub fn ino_name(prefix: u8, n: u64, name: &[u8]) -> Vec<u8> {
        let mut k = ino(prefix, n);
        k.extend_from_slice(name);
        k
    }
    pub fn ino_u64(prefix: u8, i: u64, n: u64) -> Vec<u8> {
        let mut k = ino(prefix, i);
        k.extend_from_slice(&n.to_be_bytes());
        k
    }
    pub fn chunk(prefix: u8, id: &super::ChunkId) -> Vec<u8> {
        let mut k = Vec::with_capacity(33);
        k.push(prefix);
        k.extend_from_slice(&id.0);
        k
    }
}

/// Encodes an index record: one version byte, then the postcard encoding.
pub fn encode_record<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![INDEX_RECORD_VERSION];
    out.extend_from_slice(&postcard::to_allocvec(v).expect("index record serialises"));
    out
}

pub fn decode_record<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, String> {
    match b.first() {
        Some(&INDEX_RECORD_VERSION) => {
            postcard::from_bytes(&b[1..]).map_err(|e| format!("index record is damaged ({e})"))
        }
        Some(v) if *v < INDEX_RECORD_VERSION => Err(format!(
            "index record version {v} was written by an earlier development build of cloudraid; recover the index from the backends with that build"
        )),
        Some(v) => Err(format!(
            "index record version {v} is not understood by this cloudraid; upgrade cloudraid"
        )),
        None => Err("index record is empty".into()),
    }
}

/// `S`: what the index belongs to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SuperRecord {
    pub volume_id: VolumeId,
    pub next_ino: u64,
}

/// The type of an inode. New variants go at the end: records store the
/// variant's index, so existing records keep decoding.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A named pipe (FIFO): no data is stored; the kernel carries what flows through it.
    Fifo,
    /// A Unix domain socket's name: no data.
    Socket,
    /// A character device: its device number, no data.
    CharDevice,
    /// A block device: its device number, no data.
    BlockDevice,
}

impl Kind {
    /// The kind of a `st_mode`/`mknod` mode's file type bits (`S_IFMT`).
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            _ => return None,
        })
    }

    /// The file type bits (`S_IFMT`) of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            Kind::File => libc::S_IFREG,
            Kind::Dir => libc::S_IFDIR,
            Kind::Symlink => libc::S_IFLNK,
            Kind::Fifo => libc::S_IFIFO,
            Kind::Socket => libc::S_IFSOCK,
            Kind::CharDevice => libc::S_IFCHR,
            Kind::BlockDevice => libc::S_IFBLK,
        }
    }

    /// FIFOs, sockets and devices: inodes with a type (and a device number) but
    /// no content.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice
        )
    }

    /// The type letter `ls -l` shows.
    pub fn letter(self) -> char {
        match self {
            Kind::File => '-',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::Fifo => 'p',
            Kind::Socket => 's',
            Kind::CharDevice => 'c',
            Kind::BlockDevice => 'b',
        }
    }
}

/// Nanoseconds since the Unix epoch.
pub type Nanos = i64;

/// `I` + ino: an inode.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InodeRecord {
    pub kind: Kind,
    /// Permission bits (07777).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub atime: Nanos,
    pub mtime: Nanos,
    pub ctime: Nanos,
    pub crtime: Nanos,
    /// Directories: parent inode (root is its own parent).
    pub parent: u64,
    /// Directories: next readdir cookie to hand out.
    pub next_cookie: u64,
    /// Symlinks: the target. Character and block devices: the device number
    /// (`st_rdev`, as Linux user space encodes it), 8 bytes little-endian.
    /// Empty for every other kind.
    pub target: Vec<u8>,
}

impl InodeRecord {
    /// The device number of a character or block device (0 for other kinds).
    pub fn rdev(&self) -> u64 {
        match (self.kind, <[u8; 8]>::try_from(self.target.as_slice())) {
            (Kind::CharDevice | Kind::BlockDevice, Ok(b)) => u64::from_le_bytes(b),
            _ => 0,
        }
    }
}

/// `D` + parent + name: a directory entry.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DirentRecord {
    pub ino: u64,
    pub kind: Kind,
    /// Stable readdir offset of this entry within its directory.
    pub cookie: u64,
}

/// One chunk of a file's content.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum ChunkRef {
    /// A run of zero bytes that is not stored anywhere (any length: a sparse
    /// file's hole is one reference, however large).
    Hole {
        len: u64,
    },
    Data {
        id: ChunkId,
        len: u32,
    },
}

impl ChunkRef {
    pub fn len(&self) -> u64 {
        match self {
            ChunkRef::Hole { len } => *len,
            ChunkRef::Data { len, .. } => *len as u64,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bit 7 of a record's `k`: the record carries the placement extension (a
/// content record its rule's name; a chunk record its shards' storage classes,
/// and its shards' keys name its layout). Layouts have k ≤ 127.
pub const PLACEMENT_EXT: u8 = 0x80;

/// `F` + ino: a regular file's content: content-defined chunks in order, the
/// redundancy (`k`, `m`) of its chunks and the placement rule that chose it
/// (`None`: a volume without rules, or written before rules existed).
///
/// Encoded as the fields in order; with a rule, `k` has [`PLACEMENT_EXT`] set
/// and the rule's name follows `chunks` (FORMAT.md, "Index key space").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentRecord {
    pub chunk_size: u32,
    pub k: u8,
    pub m: u8,
    pub chunks: Vec<ChunkRef>,
    pub rule: Option<String>,
}

impl Serialize for ContentRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeTuple};
        if self.k & PLACEMENT_EXT != 0 {
            return Err(S::Error::custom("a layout has k at most 127"));
        }
        let ext = self.rule.is_some();
        let mut t = s.serialize_tuple(if ext { 5 } else { 4 })?;
        t.serialize_element(&self.chunk_size)?;
        t.serialize_element(&(self.k | if ext { PLACEMENT_EXT } else { 0 }))?;
        t.serialize_element(&self.m)?;
        t.serialize_element(&self.chunks)?;
        if let Some(r) = &self.rule {
            t.serialize_element(r)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for ContentRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ContentRecord;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a content record")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<ContentRecord, A::Error> {
                use serde::de::Error;
                let short = |n| A::Error::invalid_length(n, &"a content record");
                let chunk_size = a.next_element()?.ok_or_else(|| short(0))?;
                let k: u8 = a.next_element()?.ok_or_else(|| short(1))?;
                let m = a.next_element()?.ok_or_else(|| short(2))?;
                let chunks = a.next_element()?.ok_or_else(|| short(3))?;
                let rule = if k & PLACEMENT_EXT != 0 {
                    Some(a.next_element::<String>()?.ok_or_else(|| short(4))?)
                } else {
                    None
                };
                Ok(ContentRecord {
                    chunk_size,
                    k: k & !PLACEMENT_EXT,
                    m,
                    chunks,
                    rule,
                })
            }
        }
        d.deserialize_tuple(5, V)
    }
}

/// `C` + chunk id: a stored chunk, either erasure-coded into k+m shard objects on
/// the backends, or (an inline chunk: a small one) kept sealed in this record.
///
/// Encoded as the fields in order; an inline chunk has `k` 0 (never a shard
/// layout), no placement, and its sealed bytes follow as one more field. Records
/// written before inline chunks existed end after `placement` and decode
/// unchanged (FORMAT.md, "Index key space").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRecord {
    /// How many file-content references point at this chunk.
    pub refs: u64,
    /// Plaintext bytes.
    pub len: u32,
    /// Bytes of the sealed chunk (compressed, encrypted): erasure-coded, or inline.
    pub sealed_len: u32,
    /// Shard layout; both 0 for an inline chunk.
    pub k: u8,
    pub m: u8,
    /// Size of each shard object, header included (0 for an inline chunk).
    pub shard_size: u32,
    /// Backend slot holding shard i (empty for an inline chunk).
    pub placement: Vec<u16>,
    /// An inline chunk's sealed bytes (the same seal as a sharded chunk's, before
    /// erasure coding): it has no shards anywhere.
    pub inline: Option<Vec<u8>>,
    /// The storage class code of each shard (`policy::class::StorageClass`),
    /// for a chunk placed by a rule; empty: every shard in the provider's
    /// standard class, under the keys chunks had before rules
    /// ([`ChunkRecord::shard_key`]).
    pub classes: Vec<u8>,
}

impl ChunkRecord {
    /// The record of an inline chunk of `len` plaintext bytes sealed as `sealed`
    /// (no references yet).
    pub fn inline(len: u32, sealed: Vec<u8>) -> Self {
        ChunkRecord {
            refs: 0,
            len,
            sealed_len: sealed.len() as u32,
            k: 0,
            m: 0,
            shard_size: 0,
            placement: Vec::new(),
            inline: Some(sealed),
            classes: Vec::new(),
        }
    }

    /// Object key of shard `index` of this chunk (`id`): a chunk placed by a
    /// rule (with classes) names its layout in its keys, so that shards of
    /// one chunk in two layouts (while it is re-placed) never share a key.
    pub fn shard_key(&self, id: &ChunkId, index: usize) -> String {
        match self.key_layout() {
            None => shard_key(id, index),
            Some((k, m)) => {
                let h = id.hex();
                format!("chunks/{}/{}.{}-{}.{}", &h[..2], h, k, m, index)
            }
        }
    }

    /// The layout its shard keys name (see [`ChunkRecord::shard_key`]).
    pub fn key_layout(&self) -> Option<(u8, u8)> {
        (!self.classes.is_empty()).then_some((self.k, self.m))
    }

    /// Kept in the index rather than in shards on the backends.
    pub fn is_inline(&self) -> bool {
        self.inline.is_some()
    }
}

/// A byte string encoded as such (postcard: varint length, then the bytes).
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<ByteBuf, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(ByteBuf(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

impl Serialize for ChunkRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeTuple};
        if self.inline.is_some() != (self.k == 0) {
            return Err(S::Error::custom(
                "a chunk record has k 0 exactly when its chunk is inline",
            ));
        }
        let ext = !self.classes.is_empty();
        if ext && (self.inline.is_some() || self.classes.len() != self.placement.len()) {
            return Err(S::Error::custom(
                "a chunk record's classes are one per shard of a sharded chunk",
            ));
        }
        if self.k & PLACEMENT_EXT != 0 {
            return Err(S::Error::custom("a layout has k at most 127"));
        }
        let mut t = s.serialize_tuple(if self.inline.is_some() || ext { 8 } else { 7 })?;
        t.serialize_element(&self.refs)?;
        t.serialize_element(&self.len)?;
        t.serialize_element(&self.sealed_len)?;
        t.serialize_element(&(self.k | if ext { PLACEMENT_EXT } else { 0 }))?;
        t.serialize_element(&self.m)?;
        t.serialize_element(&self.shard_size)?;
        t.serialize_element(&self.placement)?;
        if let Some(b) = &self.inline {
            t.serialize_element(&RawBytes(b))?;
        }
        if ext {
            t.serialize_element(&RawBytes(&self.classes))?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for ChunkRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ChunkRecord;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a chunk record")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<ChunkRecord, A::Error> {
                use serde::de::Error;
                let short = |n| A::Error::invalid_length(n, &"a chunk record");
                let refs = a.next_element()?.ok_or_else(|| short(0))?;
                let len = a.next_element()?.ok_or_else(|| short(1))?;
                let sealed_len = a.next_element()?.ok_or_else(|| short(2))?;
                let k: u8 = a.next_element()?.ok_or_else(|| short(3))?;
                let m = a.next_element()?.ok_or_else(|| short(4))?;
                let shard_size = a.next_element()?.ok_or_else(|| short(5))?;
                let placement = a.next_element()?.ok_or_else(|| short(6))?;
                // k 0: an inline chunk, whose sealed bytes follow. Sharded
                // chunks (k ≥ 1) end here, as every record did before.
                let inline = if k == 0 {
                    let b: ByteBuf = a.next_element()?.ok_or_else(|| short(7))?;
                    Some(b.0)
                } else {
                    None
                };
                // Placed by a rule: the shards' classes follow.
                let classes = if k & PLACEMENT_EXT != 0 {
                    let b: ByteBuf = a.next_element()?.ok_or_else(|| short(7))?;
                    b.0
                } else {
                    Vec::new()
                };
                Ok(ChunkRecord {
                    refs,
                    len,
                    sealed_len,
                    k: k & !PLACEMENT_EXT,
                    m,
                    shard_size,
                    placement,
                    inline,
                    classes,
                })
            }
        }
        d.deserialize_tuple(8, V)
    }
}

/// `L`: the metadata log's progress.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogState {
    /// Journal entries up to this sequence number are in log objects on the backends.
    pub pushed: u64,
    /// The newest snapshot on the backends covers the log up to this number.
    pub snapshot: u64,
    /// Log objects written since that snapshot, and their bytes.
    pub logs_since_snapshot: u64,
    pub log_bytes_since_snapshot: u64,
}

/// One index batch, as journalled and logged: puts (`Some`) and deletes (`None`).
pub type LoggedOps = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// `R` + chunk id: shards of a stored chunk that could not be written (a write that
/// reached its quorum while some backends were down). Repair rewrites them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DegradedRecord {
    pub missing: Vec<u8>,
}

// ---------------------------------------------------------------------------------
// Snapshots: content-addressed trees in the index.
// ---------------------------------------------------------------------------------

/// A snapshot tree's address: SHA-256 of its encoded `TreeRecord` (version byte
/// included). Equal directories have one id, so unchanged subtrees are shared.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TreeId(pub [u8; 32]);

impl TreeId {
    pub fn of(encoded: &[u8]) -> Self {
        TreeId(Sha256::digest(encoded).into())
    }
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}
impl fmt::Display for TreeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}
impl fmt::Debug for TreeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One entry of a snapshot directory: an inode as it was, with its content.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TreeEntry {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: Nanos,
    pub mtime: Nanos,
    pub ctime: Nanos,
    pub crtime: Nanos,
    /// As `InodeRecord::target`: a symlink's target, a device number, a sparse
    /// file's data bytes.
    pub target: Vec<u8>,
    /// Hard links: the live inode number when it had more than one link (entries
    /// with the same `link` in one snapshot are one file); 0 otherwise.
    pub link: u64,
    /// Link count at the time (directories: 2 + subdirectories).
    pub nlink: u32,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Regular files: the content (k, m and chunks), as the live `F` record.
    pub content: Option<ContentRecord>,
    /// Directories: the tree of its entries.
    pub tree: Option<TreeId>,
}

/// `T` + tree id: the entries of one directory, sorted by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TreeRecord {
    pub entries: Vec<TreeEntry>,
}

/// `U` + tree id, `K` + chunk id: a reference count.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TreeRefs {
    pub refs: u64,
}

/// `P` + snapshot id: one snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// When it was taken (its view of the tree is the index at that moment).
    pub time: Nanos,
    pub tags: Vec<String>,
    /// Paths it covers (`--path`), absolute within the volume; empty: everything.
    pub paths: Vec<String>,
    /// The root directory as it was: attributes and tree.
    pub root: TreeEntry,
    /// Regular files, directories and other entries (symlinks, devices...) it holds.
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    /// Logical bytes of its regular files.
    pub bytes: u64,
    /// Plaintext bytes of chunks no older snapshot held when it was taken.
    pub added_bytes: u64,
    /// Trees it stored anew (the rest were shared with older snapshots), and their bytes.
    pub new_trees: u64,
    pub new_tree_bytes: u64,
    /// Who took it: "cli", "mount", "schedule" (informational).
    pub origin: String,
}

/// How a backup job's run ended.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// Everything was stored.
    Success,
    /// Stored, except the entries (or databases) listed in `errors`.
    Partial,
    /// Nothing was changed by this run, or it stopped part-way (see `errors`).
    #[default]
    Failed,
    /// Not run: its `before` hook failed, or another run of the job was going on.
    Skipped,
}

impl RunResult {
    pub fn name(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Partial => "partial",
            RunResult::Failed => "failed",
            RunResult::Skipped => "skipped",
        }
    }
}

/// How much an event matters.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// `N` + time + sequence: something that happened to the volume.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventRecord {
    /// Nanoseconds since the epoch.
    pub at: Nanos,
    /// What kind of event (`backend_down`, `job_run`...; see docs/FORMAT.md).
    pub kind: String,
    pub severity: Severity,
    /// What it is about: a backend, a job, a snapshot (empty: the volume).
    pub subject: String,
    /// One line for people.
    pub message: String,
}

/// What an API token may do: each role can do what the ones before it can.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Status, listings, downloads, events, metrics.
    Read,
    /// Also uploads, deletes, new folders, snapshots, running backup jobs.
    Write,
    /// Also scrub, repair and restores in place.
    Admin,
}

/// `A` + name: an API token. Only the SHA-256 of its secret is kept.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub role: TokenRole,
    pub hash: [u8; 32],
    pub created: Nanos,
}

/// `H` + job + 0 + start: one run of a backup job, kept in the history.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobRunRecord {
    pub job: String,
    /// What started it: "manual", "schedule", "missed" (a scheduled run caught
    /// up at start), "watch".
    pub trigger: String,
    pub started: Nanos,
    pub duration_ms: u64,
    pub result: RunResult,
    /// Entries stored anew, stored again (changed), removed (mirrored deletes)
    /// and left alone (unchanged).
    pub new: u64,
    pub changed: u64,
    pub deleted: u64,
    pub unchanged: u64,
    /// Bytes of the files stored (new and changed, database dumps included).
    pub bytes: u64,
    /// Chunk bytes uploaded (after deduplication).
    pub uploaded_bytes: u64,
    /// Databases dumped.
    pub databases: u64,
    /// The snapshot the run ended with.
    pub snapshot: Option<String>,
    /// What went wrong, one line each (at most 100, then a count of the rest).
    pub errors: Vec<String>,
}

/// `Q`: the volume's snapshot settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// Deleting a snapshot needs the passphrase or key file given again (not a
    /// stored one), and is refused through the mount daemon without it.
    pub protected: bool,
}

/// A snapshot id: 4 random bytes (unique within the volume), shown as 8 hex digits.
pub fn snapshot_id_hex(id: u32) -> String {
    format!("{id:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kinds are stored as their variant index: the first three are what older
    /// versions wrote, the special files follow them.
    #[test]
    fn kinds_keep_their_stored_numbers() {
        let all = [
            Kind::File,
            Kind::Dir,
            Kind::Symlink,
            Kind::Fifo,
            Kind::Socket,
            Kind::CharDevice,
            Kind::BlockDevice,
        ];
        for (i, k) in all.into_iter().enumerate() {
            assert_eq!(postcard::to_allocvec(&k).unwrap(), vec![i as u8]);
            assert_eq!(Kind::from_mode(k.mode_bits() | 0o644), Some(k));
        }
    }

    #[test]
    fn device_numbers_are_eight_bytes_little_endian() {
        let dev = libc::makedev(259, 70_000);
        let mut r = InodeRecord {
            kind: Kind::BlockDevice,
            perm: 0o660,
            uid: 0,
            gid: 6,
            nlink: 1,
            size: 0,
            atime: 0,
            mtime: 0,
            ctime: 0,
            crtime: 0,
            parent: 0,
            next_cookie: 3,
            target: dev.to_le_bytes().to_vec(),
        };
        let back: InodeRecord = decode_record(&encode_record(&r)).unwrap();
        assert_eq!((back.rdev(), back.kind), (dev, Kind::BlockDevice));
        r.kind = Kind::Fifo;
        assert_eq!(r.rdev(), 0, "only devices have a device number");
    }

    /// The chunk record as every build before inline chunks wrote it.
    #[derive(Serialize)]
    struct ChunkRecordBefore {
        refs: u64,
        len: u32,
        sealed_len: u32,
        k: u8,
        m: u8,
        shard_size: u32,
        placement: Vec<u16>,
    }

    #[test]
    fn chunk_records_of_earlier_builds_decode_and_sharded_ones_are_written_the_same() {
        let before = ChunkRecordBefore {
            refs: 3,
            len: 1 << 20,
            sealed_len: 1_048_620,
            k: 4,
            m: 2,
            shard_size: 262_235,
            placement: vec![5, 0, 1, 2, 3, 4],
        };
        let old_bytes = encode_record(&before);
        // Written by hand from FORMAT.md: version 2, then the varints in order.
        let mut by_hand = vec![2u8, 3, 0x80, 0x80, 0x40, 0xac, 0x80, 0x40, 4, 2];
        by_hand.extend_from_slice(&[0xdb, 0x80, 0x10, 6, 5, 0, 1, 2, 3, 4]);
        assert_eq!(old_bytes, by_hand);
        let rec: ChunkRecord = decode_record(&old_bytes).unwrap();
        assert_eq!(
            rec,
            ChunkRecord {
                refs: 3,
                len: 1 << 20,
                sealed_len: 1_048_620,
                k: 4,
                m: 2,
                shard_size: 262_235,
                placement: vec![5, 0, 1, 2, 3, 4],
                inline: None,
                classes: Vec::new(),
            }
        );
        assert!(!rec.is_inline());
        assert_eq!(encode_record(&rec), old_bytes, "sharded records unchanged");
        assert_eq!(
            rec.shard_key(&ChunkId([0xab; 32]), 3),
            shard_key(&ChunkId([0xab; 32]), 3)
        );
    }

    #[test]
    fn records_placed_by_a_rule_carry_classes_and_name_their_layout_in_keys() {
        let rec = ChunkRecord {
            refs: 1,
            len: 100,
            sealed_len: 120,
            k: 1,
            m: 1,
            shard_size: 200,
            placement: vec![2, 0],
            inline: None,
            classes: vec![0, 5],
        };
        let b = encode_record(&rec);
        // version, refs 1, len 100, sealed_len 120, k 1 | 0x80, m 1, shard_size
        // 200, placement [2, 0], then the classes as bytes: [0, 5].
        assert_eq!(
            b,
            vec![2u8, 1, 100, 120, 0x81, 1, 0xc8, 0x01, 2, 2, 0, 2, 0, 5]
        );
        assert_eq!(decode_record::<ChunkRecord>(&b).unwrap(), rec);
        let id = ChunkId([0xab; 32]);
        let key = rec.shard_key(&id, 1);
        assert_eq!(key, format!("chunks/ab/{}.1-1.1", id.hex()));
        assert_eq!(
            parse_shard_key(&key),
            Some(ShardName {
                id,
                layout: Some((1, 1)),
                index: 1
            })
        );
        // One class per shard, or none.
        let bad = ChunkRecord {
            classes: vec![0],
            ..rec
        };
        assert!(postcard::to_allocvec(&bad).is_err());
    }

    #[test]
    fn content_records_name_their_rule_and_decode_as_before_without() {
        let plain = ContentRecord {
            chunk_size: 1 << 20,
            k: 4,
            m: 2,
            chunks: vec![ChunkRef::Hole { len: 5 }],
            rule: None,
        };
        let b = encode_record(&plain);
        // version, chunk_size, k 4, m 2, one chunk: Hole (0) of 5.
        assert_eq!(b, vec![2u8, 0x80, 0x80, 0x40, 4, 2, 1, 0, 5]);
        assert_eq!(decode_record::<ContentRecord>(&b).unwrap(), plain);
        let ruled = ContentRecord {
            k: 1,
            m: 2,
            rule: Some("videos".into()),
            ..plain
        };
        let b = encode_record(&ruled);
        assert_eq!(b[4], 0x81, "k with the extension bit");
        assert!(b.ends_with(b"\x06videos"));
        assert_eq!(decode_record::<ContentRecord>(&b).unwrap(), ruled);
    }

    #[test]
    fn inline_chunk_records_carry_their_sealed_bytes() {
        let sealed: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let mut rec = ChunkRecord::inline(4096, sealed.clone());
        rec.refs = 2;
        let b = encode_record(&rec);
        // version, refs 2, len 4096, sealed_len 300, k 0, m 0, shard_size 0,
        // no placement, then the sealed bytes: length 300, the bytes.
        let mut head = vec![2u8, 2, 0x80, 0x20, 0xac, 0x02, 0, 0, 0, 0, 0xac, 0x02];
        head.extend_from_slice(&sealed);
        assert_eq!(b, head);
        let back: ChunkRecord = decode_record(&b).unwrap();
        assert_eq!(back, rec);
        assert_eq!(back.inline.as_deref(), Some(&sealed[..]));
        // Cut short: an inline record without its bytes is damaged, not sharded.
        assert!(decode_record::<ChunkRecord>(&b[..b.len() - 1]).is_err());
        assert!(decode_record::<ChunkRecord>(&b[..10]).is_err());
    }

    #[test]
    fn a_record_cannot_claim_shards_and_inline_bytes_at_once() {
        let mut rec = ChunkRecord::inline(10, vec![1, 2, 3]);
        rec.k = 4;
        assert!(postcard::to_allocvec(&rec).is_err());
    }
}
