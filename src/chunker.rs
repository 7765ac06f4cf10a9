//! Content-defined chunking (FastCDC, 2020 variant, from the `fastcdc` crate).
//!
//! Chunk boundaries depend on the bytes themselves, not on their offsets, so an
//! insertion or deletion early in a file changes only the chunks around it, and
//! equal content in different files (or versions) cuts into equal chunks, which
//! are stored once. A cut point depends only on the bytes from the chunk's start
//! up to `max` bytes after it, so cutting can start again at any earlier
//! boundary and gives the same chunks. Pure, no I/O.

use fastcdc::v2020::FastCDC;

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

    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes pushed and not yet given out.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
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
}
