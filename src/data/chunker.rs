//! Content-defined chunking (FastCDC, 2020 variant, from the `fastcdc` crate).
//!
//! Chunk boundaries depend on the bytes themselves, not on their offsets, so an
//! insertion or deletion early in a file changes only the chunks around it, and
//! equal content in different files (or versions) cuts into equal chunks, which
//! are stored once. A cut point depends only on the bytes from the chunk's start
//! up to `max` bytes after it, so cutting can start again at any earlier
//! boundary and gives the same chunks. Pure, no I/O.

use fastcdc::v2020::FastCDC;
use std::ops::Range;

/// Minimum, average and maximum chunk sizes in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunking {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Chunking {
    /// The usual spread around an average: a quarter of it to four times it.
    pub fn around(avg: u32) -> Chunking {
        let avg = avg.clamp(fastcdc::v2020::AVERAGE_MIN, fastcdc::v2020::AVERAGE_MAX);
        Chunking {
            min: (avg / 4).clamp(fastcdc::v2020::MINIMUM_MIN, fastcdc::v2020::MINIMUM_MAX),
            avg,
            max: avg
                .saturating_mul(4)
                .clamp(fastcdc::v2020::MAXIMUM_MIN, fastcdc::v2020::MAXIMUM_MAX),
        }
    }

    /// Checks explicit sizes against what FastCDC accepts.
    pub fn new(min: u32, avg: u32, max: u32) -> Result<Chunking, String> {
        use fastcdc::v2020::*;
        let fits = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min < avg
            && avg < max;
        if !fits {
            return Err(format!(
                "chunk sizes min {min}, average {avg}, max {max} must satisfy min < average < max, with min {}..={}, average {}..={} and max {}..={} bytes",
                MINIMUM_MIN, MINIMUM_MAX, AVERAGE_MIN, AVERAGE_MAX, MAXIMUM_MIN, MAXIMUM_MAX
            ));
        }
        Ok(Chunking { min, avg, max })
    }

    /// The length of the first chunk of `data`, which holds at least `max`
    /// bytes or everything up to the end of what is being cut.
    pub fn cut(&self, data: &[u8]) -> usize {
        if data.len() <= self.min as usize {
            return data.len();
        }
        let c = FastCDC::new(data, self.min, self.avg, self.max);
        let (_, end) = c.cut(0, data.len().min(self.max as usize));
        end.max(1)
    }
}

/// Cuts a stream of bytes into chunks: push bytes as they are read, take
/// chunks as soon as they are decided, and the rest at the end.
pub struct Cutter {
    chunking: Chunking,
    buf: Vec<u8>,
    /// Bytes of `buf` already given out.
    pos: usize,
    /// Stream offset of `buf[pos]`.
    offset: u64,
}

impl Cutter {
    /// A cutter whose first byte is at stream offset `offset`.
    pub fn new(chunking: Chunking, offset: u64) -> Cutter {
        Cutter {
            chunking,
            buf: Vec::new(),
            pos: 0,
            offset,
        }
    }

    /// Memory: the buffer is compacted before it would grow, so it holds about
    /// one largest chunk plus one push.
    pub fn push(&mut self, data: &[u8]) {
        let full = self.buf.len() + data.len() > self.buf.capacity();
        if self.pos > 0 && (self.pos >= self.buf.len() / 2 || full) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes pushed and not yet given out.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Everything pushed and not yet given out, as (stream offset, bytes),
    /// without cutting it; the cutter is left empty at the offset after it.
    pub fn take_rest(&mut self) -> (u64, Vec<u8>) {
        let rest = self.buf.split_off(self.pos);
        let off = self.offset;
        self.buf.clear();
        self.pos = 0;
        self.offset += rest.len() as u64;
        (off, rest)
    }

    /// The next chunk, as (stream offset, bytes): once `max` bytes are pending
    /// (the cut cannot change any more), or, with `at_end`, whatever is left.
    pub fn next_chunk(&mut self, at_end: bool) -> Option<(u64, Vec<u8>)> {
        let pending = self.pending();
        if pending == 0 || (!at_end && pending < self.chunking.max as usize) {
            return None;
        }
        let n = self.chunking.cut(&self.buf[self.pos..]);
        let chunk = self.buf[self.pos..self.pos + n].to_vec();
        let off = self.offset;
        self.pos += n;
        self.offset += n as u64;
        Some((off, chunk))
    }
}

/// A piece of a range being cut: bytes to read and cut into chunks, or a run
/// of zeros stored as one hole without being read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Data(Range<u64>),
    Zeros(Range<u64>),
}

/// Splits `range` into segments. `data` (sorted, disjoint) are the ranges whose
/// bytes must be read — written bytes, stored chunks, a local file's data
/// extents; everything else is known to be zeros. A run of zeros of at least
/// `min_hole` bytes becomes a `Zeros` segment and costs nothing; a shorter run
/// is read and cut with the data around it (so small gaps do not scatter chunk
/// boundaries). The work of cutting is thus bounded by the data bytes plus
/// `min_hole` per data range, never by the length of a hole.
pub fn segments(
    range: Range<u64>,
    data: impl IntoIterator<Item = Range<u64>>,
    min_hole: u64,
) -> Vec<Segment> {
    let mut out = Vec::new();
    if range.is_empty() {
        return out;
    }
    let min_hole = min_hole.max(1);
    let mut pos = range.start;
    let mut open: Option<u64> = None;
    for d in data {
        let (a, b) = (d.start.max(range.start), d.end.min(range.end));
        if a >= b || a < pos {
            continue;
        }
        if a - pos >= min_hole {
            if let Some(s) = open.take() {
                out.push(Segment::Data(s..pos));
            }
            out.push(Segment::Zeros(pos..a));
            open = Some(a);
        } else if open.is_none() {
            open = Some(pos);
        }
        pos = b;
    }
    if range.end - pos >= min_hole {
        if let Some(s) = open.take() {
            out.push(Segment::Data(s..pos));
        }
        out.push(Segment::Zeros(pos..range.end));
    } else {
        out.push(Segment::Data(open.unwrap_or(pos)..range.end));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    fn cut_all(c: Chunking, data: &[u8], piece: usize) -> Vec<(u64, Vec<u8>)> {
        let mut cutter = Cutter::new(c, 0);
        let mut out = Vec::new();
        for p in data.chunks(piece.max(1)) {
            cutter.push(p);
            while let Some(ch) = cutter.next_chunk(false) {
                out.push(ch);
            }
        }
        while let Some(ch) = cutter.next_chunk(true) {
            out.push(ch);
        }
        out
    }

    #[test]
    fn chunks_cover_the_stream_within_bounds_whatever_the_read_sizes() {
        let c = Chunking::around(16 << 10);
        let data = noise(1, 1 << 20);
        let a = cut_all(c, &data, 1000);
        let b = cut_all(c, &data, 300_000);
        assert_eq!(a, b, "cut points do not depend on how the bytes arrive");
        let joined: Vec<u8> = a.iter().flat_map(|(_, d)| d.clone()).collect();
        assert_eq!(joined, data);
        let mut off = 0;
        for (i, (o, d)) in a.iter().enumerate() {
            assert_eq!(*o, off);
            off += d.len() as u64;
            assert!(d.len() <= c.max as usize);
            if i + 1 < a.len() {
                assert!(d.len() >= c.min as usize);
            }
        }
        let avg = data.len() / a.len();
        assert!(avg > 8 << 10 && avg < 32 << 10, "average {avg}");
    }

    #[test]
    fn an_insertion_changes_only_the_chunks_around_it() {
        let c = Chunking::around(16 << 10);
        let data = noise(2, 2 << 20);
        let mut edited = vec![0x55];
        edited.extend_from_slice(&data);
        let before: std::collections::HashSet<Vec<u8>> = cut_all(c, &data, 65536)
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        let after = cut_all(c, &edited, 65536);
        let new = after.iter().filter(|(_, d)| !before.contains(d)).count();
        assert!(new <= 2, "{new} new chunks of {}", after.len());
    }

    #[test]
    fn sizes_are_checked() {
        assert!(Chunking::new(256 << 10, 1 << 20, 4 << 20).is_ok());
        assert!(Chunking::new(1 << 20, 1 << 20, 4 << 20).is_err());
        assert!(Chunking::new(16, 1 << 20, 4 << 20).is_err());
        assert_eq!(
            Chunking::around(1 << 20),
            Chunking::new(256 << 10, 1 << 20, 4 << 20).unwrap()
        );
    }

    #[test]
    fn holes_are_runs_of_zeros_at_least_min_hole_long() {
        use Segment::*;
        let pib = 1u64 << 50;
        // Written at both ends of a 1 PiB file: two data pieces, one hole.
        assert_eq!(
            segments(0..pib, [0..10, pib - 10..pib], 4096),
            vec![Data(0..10), Zeros(10..pib - 10), Data(pib - 10..pib)]
        );
        // A short gap is read with the data around it; a leading hole is one.
        assert_eq!(
            segments(0..100_000, [50_000..50_010, 50_020..50_030], 4096),
            vec![
                Zeros(0..50_000),
                Data(50_000..50_030),
                Zeros(50_030..100_000)
            ]
        );
        // Nothing written: all hole; a short range with nothing: read as zeros.
        assert_eq!(segments(5..pib, [], 4096), vec![Zeros(5..pib)]);
        assert_eq!(segments(5..100, [], 4096), vec![Data(5..100)]);
        assert_eq!(segments(5..5, std::iter::once(0..10), 4096), vec![]);
        // Data ranges outside the range are clipped.
        assert_eq!(
            segments(100..10_000, [0..200, 9_000..20_000], 1000),
            vec![Data(100..200), Zeros(200..9_000), Data(9_000..10_000)]
        );
    }

    proptest::proptest! {
        #[test]
        fn segments_cover_the_range_and_never_hide_data(
            start in 0u64..1000,
            len in 0u64..100_000,
            raw in proptest::collection::vec((0u64..120_000, 1u64..5_000), 0..20),
            min_hole in 1u64..10_000,
        ) {
            let range = start..start + len;
            let mut set = rangemap::RangeSet::new();
            for (a, l) in raw {
                set.insert(a..a + l);
            }
            let segs = segments(range.clone(), set.iter().cloned(), min_hole);
            let mut pos = range.start;
            let mut prev_zero = false;
            for s in &segs {
                let (r, zero) = match s {
                    Segment::Data(r) => (r.clone(), false),
                    Segment::Zeros(r) => (r.clone(), true),
                };
                proptest::prop_assert_eq!(r.start, pos);
                proptest::prop_assert!(r.start < r.end);
                if zero {
                    proptest::prop_assert!(r.end - r.start >= min_hole);
                    proptest::prop_assert!(set.overlapping(&r).next().is_none());
                    proptest::prop_assert!(!prev_zero);
                } else {
                    proptest::prop_assert!(prev_zero || pos == range.start);
                }
                prev_zero = zero;
                pos = r.end;
            }
            proptest::prop_assert_eq!(pos, range.end);
        }
    }
}
