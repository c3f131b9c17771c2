use std::io::{self, Read};

use rand::{RngExt, rng};
use rustic_cdc::{Polynom, Polynom64, Rabin64};

use crate::error::{ErrorKind, RusticError, RusticResult};

pub(super) mod constants {
    /// The size of a kilobyte.
    pub(super) const KB: usize = 1024;
    /// Random polynomial maximum tries.
    pub(super) const RAND_POLY_MAX_TRIES: i32 = 1_000_000;
}

pub(crate) fn check_rabin_params(
    chunk_size: usize,
    chunk_min_size: usize,
    chunk_max_size: usize,
) -> RusticResult<()> {
    if (chunk_size & (chunk_size - 1)) != 0 {
        return Err(RusticError::new(
            ErrorKind::Unsupported,
            "Chunk size must be a power of 2 for the rabin chunker. chunk size = {chunk_size}.",
        )
        .attach_context("chunk_size", chunk_size.to_string()));
    }
    if chunk_min_size > chunk_size {
        return Err(RusticError::new(
            ErrorKind::Unsupported,
            "Chunk min size must be smaller or equal than the chunk size.",
        ));
    }
    if chunk_max_size < chunk_size {
        return Err(RusticError::new(
            ErrorKind::Unsupported,
            "Chunk max size must be larger or equal than the chunk size.",
        ));
    }
    Ok(())
}

/// `ChunkIter` is an iterator that chunks data.
///
/// lifeboat patch: it cuts at exactly the positions rustic_core 0.13.0's byte-by-byte loop
/// cuts at (same polynomial, window, split mask, minimum and maximum), but finds them faster.
/// A rabin fingerprint depends only on the 64 bytes of its window, so the buffered stream is
/// scanned in several independent lanes at once: the table lookup each byte waits for in one
/// lane overlaps with the others, where one chain of lookups ran before. Chunks are copied
/// out of the buffer in one piece instead of being pushed byte by byte.
pub(crate) struct ChunkIter<R: Read + Send> {
    /// Stream bytes read ahead; `buf[start..end]` are not yet returned.
    buf: Vec<u8>,
    /// Where the next chunk starts in `buf`.
    start: usize,
    /// End of the valid bytes in `buf`.
    end: usize,
    /// The reader.
    reader: R,
    /// The reader has returned 0 (end of stream).
    eof: bool,
    /// The split mask used to determine if a chunk is a chunk boundary.
    split_mask: u64,
    /// The rolling hash's tables.
    tables: RabinTables,
    /// The minimum size of a chunk.
    min_size: usize,
    /// The maximum size of a chunk.
    max_size: usize,
    /// If the iterator is finished.
    finished: bool,
}

/// The window of the rolling hash: 64 bytes.
const WINDOW: usize = 64;
/// Fingerprint positions one lane covers per round.
const LANE: usize = 4 * constants::KB;
/// Lanes scanned together.
const LANES: usize = 4;

/// What [`Rabin64`] keeps for one polynomial, without its window.
struct RabinTables {
    out_table: [Polynom64; 256],
    mod_table: [Polynom64; 256],
    shift: i32,
}

impl RabinTables {
    fn new(poly: Polynom64) -> Self {
        Self {
            out_table: Rabin64::calculate_out_table(WINDOW, &poly),
            mod_table: Rabin64::calculate_mod_table(&poly),
            shift: poly.degree() - 8,
        }
    }

    /// Appends a byte to the fingerprint (as [`Rabin64`] does when it slides one in).
    #[inline(always)]
    fn append(&self, hash: Polynom64, byte: u8) -> Polynom64 {
        let index = (hash >> self.shift) & 255;
        ((hash << 8) | Polynom64::from(byte)) ^ self.mod_table[index as usize]
    }

    /// The fingerprint of `bytes`, as a freshly reset hash that had them slid in.
    #[inline]
    fn fingerprint(&self, bytes: &[u8]) -> Polynom64 {
        bytes.iter().fold(0, |h, &b| self.append(h, b))
    }
}

impl<R: Read + Send> ChunkIter<R> {
    /// Creates a new `ChunkIter`.
    ///
    /// # Arguments
    ///
    /// * `poly` - The polynomial of the rolling hash.
    /// * `reader` - The reader to read from.
    /// * `size_hint` - unused: the read-ahead buffer is sized by the maximum chunk size
    pub(crate) fn new(
        poly: Polynom64,
        chunk_size: usize,
        chunk_min_size: usize,
        chunk_max_size: usize,
        reader: R,
        _size_hint: usize,
    ) -> RusticResult<Self> {
        check_rabin_params(chunk_size, chunk_min_size, chunk_max_size)?;
        if chunk_min_size < WINDOW {
            return Err(RusticError::new(
                ErrorKind::Unsupported,
                "Chunk min size must be at least the rabin window (64 bytes).",
            ));
        }
        let chunk_size: u64 = chunk_size.try_into().unwrap();
        Ok(Self {
            // three maximum chunks: making room moves at most one maximum chunk per two
            // consumed; the zeroed pages are only touched as the stream fills them
            buf: vec![0; 3 * chunk_max_size],
            start: 0,
            end: 0,
            reader,
            eof: false,
            split_mask: chunk_size - 1,
            tables: RabinTables::new(poly),
            min_size: chunk_min_size,
            max_size: chunk_max_size,
            finished: false,
        })
    }

    /// Reads until `want` bytes are buffered after `start`, or the stream ends. It asks for
    /// no more than that: while this thread chunks and hashes, the producer keeps writing
    /// into its pipe, where a large read-ahead would leave it blocked on a full pipe.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        if self.start + want > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let upto = self.start + want;
        while self.end < upto && !self.eof {
            match self.reader.read(&mut self.buf[self.end..upto]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Where the chunk starting at `start` ends, given that it may not go past `limit`
    /// (both indexes into `buf`, `limit - start >= min_size`).
    ///
    /// Mirrors rustic_core 0.13.0's loop, including its warm-up: the window is prefilled
    /// with the 63 bytes before the last byte of the minimum chunk, and that last byte never
    /// enters the window, so the first 64 fingerprints after the minimum size are taken
    /// over the stream without it. From then on a fingerprint covers the 64 bytes before
    /// the cut it decides.
    fn cut(&self, start: usize, limit: usize) -> usize {
        let t = &self.tables;
        let d = &self.buf;
        let mask = self.split_mask;
        let m = start + self.min_size;
        let mut h = t.fingerprint(&d[m - WINDOW..m - 1]);
        if h & mask == 0 {
            return m;
        }
        for j in 1..=WINDOW {
            let e = m + j;
            if e > limit {
                return limit;
            }
            let out = if j == 1 { 0 } else { d[m - WINDOW + j - 2] };
            h = t.append(h ^ t.out_table[out as usize], d[e - 1]);
            if h & mask == 0 {
                return e;
            }
        }
        first_cut(t, d, mask, m + WINDOW + 1, limit + 1).unwrap_or(limit)
    }
}

/// The first `e` in `from..to` whose fingerprint over `d[e - 64..e]` matches `mask`
/// (`from > 64`), scanning `LANES` lanes of `LANE` positions at a time.
///
/// The lanes only record whether they matched anywhere; the first lane that did is scanned
/// again on its own to find where. A match is rare (about one per chunk), and tracking its
/// position in every lane cost more than the hashing: spilled registers and conditional
/// moves held the loop to ~470 MB/s of stream, against ~670 MB/s without them (the
/// benchmark dump, this machine; docs/decisions/0007).
fn first_cut(t: &RabinTables, d: &[u8], mask: u64, from: usize, to: usize) -> Option<usize> {
    let mut s = from;
    while to - s >= LANES * LANE {
        let outs: [&[u8]; LANES] = std::array::from_fn(|l| {
            let p = s + l * LANE;
            &d[p - WINDOW..p + LANE - WINDOW - 1]
        });
        let ins: [&[u8]; LANES] = std::array::from_fn(|l| {
            let p = s + l * LANE;
            &d[p..p + LANE - 1]
        });
        let mut hash: [Polynom64; LANES] = std::array::from_fn(|l| {
            let p = s + l * LANE;
            t.fingerprint(&d[p - WINDOW..p])
        });
        // the top bit is set once some fingerprint & mask was 0 (0 - 1 wraps; anything
        // else stays below the mask)
        let mut matched: [u64; LANES] = std::array::from_fn(|l| (hash[l] & mask).wrapping_sub(1));
        // position e = p + k + 1 of lane l (starting at p): the byte d[e - 65] leaves the
        // window, d[e - 1] enters it
        for k in 0..LANE - 1 {
            for l in 0..LANES {
                let h = t.append(hash[l] ^ t.out_table[outs[l][k] as usize], ins[l][k]);
                hash[l] = h;
                matched[l] |= (h & mask).wrapping_sub(1);
            }
        }
        if let Some(l) = (0..LANES).find(|&l| matched[l] >> 63 != 0) {
            let p = s + l * LANE;
            return first_cut_serial(t, d, mask, p, p + LANE);
        }
        s += LANES * LANE;
    }
    first_cut_serial(t, d, mask, s, to)
}

/// [`first_cut`] one position after the other.
fn first_cut_serial(t: &RabinTables, d: &[u8], mask: u64, from: usize, to: usize) -> Option<usize> {
    if from >= to {
        return None;
    }
    let mut h = t.fingerprint(&d[from - WINDOW..from]);
    if h & mask == 0 {
        return Some(from);
    }
    for e in from + 1..to {
        h = t.append(h ^ t.out_table[d[e - WINDOW - 1] as usize], d[e - 1]);
        if h & mask == 0 {
            return Some(e);
        }
    }
    None
}

impl<R: Read + Send> Iterator for ChunkIter<R> {
    type Item = RusticResult<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let read_err = |err| {
            RusticError::with_source(
                ErrorKind::InputOutput,
                "Failed to read from reader in iterator",
                err,
            )
        };
        if let Err(err) = self.fill(self.max_size) {
            self.finished = true;
            return Some(Err(read_err(err)));
        }
        let start = self.start;
        let avail = self.end - start;
        let cut = if avail < self.min_size {
            // the last chunk, shorter than the minimum
            self.finished = true;
            if avail == 0 {
                return None;
            }
            self.end
        } else {
            self.cut(start, start + avail.min(self.max_size))
        };
        self.start = cut;
        Some(Ok(self.buf[start..cut].to_vec()))
    }
}

/// [`random_poly`] returns an random irreducible polynomial of degree 53
/// (largest prime number below 64-8)
/// There are (2^53-2/53) irreducible polynomials of degree 53 in
/// `F_2[X]`, c.f. Michael O. Rabin (1981): "Fingerprinting by Random
/// Polynomials", page 4.
///
/// # Errors
///
/// * If no polynomial could be found in one million tries.
pub fn random_poly() -> RusticResult<u64> {
    for _ in 0..constants::RAND_POLY_MAX_TRIES {
        let mut poly: u64 = rng().random();

        // mask away bits above bit 53
        poly &= (1 << 54) - 1;

        // set highest and lowest bit so that the degree is 53 and the
        // polynomial is not trivially reducible
        poly |= (1 << 53) | 1;

        if poly.irreducible() {
            return Ok(poly);
        }
    }

    Err(RusticError::new(
        ErrorKind::Internal,
        "No suitable polynomial found, this should essentially never happen. Please try again.",
    )
    .ask_report())
}

/// A trait for extending polynomials.
pub(crate) trait PolynomExtend {
    /// Returns true IFF x is irreducible over `F_2`.
    fn irreducible(&self) -> bool;

    /// Returns the degree of the polynomial.
    fn gcd(self, other: Self) -> Self;

    /// Adds two polynomials.
    fn add(self, other: Self) -> Self;

    /// Multiplies two polynomials modulo another polynomial.
    fn mulmod(self, other: Self, modulo: Self) -> Self;
}

// implementation goes along the lines of
// https://github.com/restic/chunker/blob/master/polynomials.go
impl PolynomExtend for Polynom64 {
    // Irreducible returns true IFF x is irreducible over F_2. This function
    // uses Ben Or's reducibility test.
    //
    // For details see "Tests and Constructions of Irreducible Polynomials over
    // Finite Fields".
    fn irreducible(&self) -> bool {
        for i in 1..=self.degree() / 2 {
            if self.gcd(qp(i, *self)) != 1 {
                return false;
            }
        }
        true
    }

    fn gcd(self, other: Self) -> Self {
        if other == 0 {
            return self;
        }

        if self == 0 {
            return other;
        }

        if self.degree() < other.degree() {
            self.gcd(other.modulo(&self))
        } else {
            other.gcd(self.modulo(&other))
        }
    }

    fn add(self, other: Self) -> Self {
        self ^ other
    }

    fn mulmod(self, other: Self, modulo: Self) -> Self {
        if self == 0 || other == 0 {
            return 0;
        }

        let mut res: Self = 0;
        let mut a = self;
        let mut b = other;

        if b & 1 > 0 {
            res = res.add(a).modulo(&modulo);
        }

        while b != 0 {
            a = (a << 1).modulo(&modulo);
            b >>= 1;
            if b & 1 > 0 {
                res = res.add(a).modulo(&modulo);
            }
        }

        res
    }
}

// qp computes the polynomial (x^(2^p)-x) mod g. This is needed for the
// reducibility test.
fn qp(p: i32, g: Polynom64) -> Polynom64 {
    // start with x
    let mut res: Polynom64 = 2;

    for _ in 0..p {
        // repeatedly square res
        res = res.mulmod(res, g);
    }

    // add x
    res.add(2).modulo(&g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hasher::hash;
    use insta::assert_ron_snapshot;
    use rand::prelude::*;
    use std::io::{Cursor, repeat};

    /// The Splitmask is used to determine if a chunk is a chunk boundary.
    const SIZE: usize = 1 << 20;
    /// The size of a megabyte.
    const MB: usize = 1024 * constants::KB;
    /// The minimum size of a chunk.
    const MIN_SIZE: usize = 512 * constants::KB;
    /// The maximum size of a chunk.
    const MAX_SIZE: usize = 8 * MB;

    fn chunker<R: Read + Send>(reader: R, size_hint: usize) -> ChunkIter<R> {
        let poly = 0x003D_A335_8B4D_C173;
        ChunkIter::new(poly, SIZE, MIN_SIZE, MAX_SIZE, reader, size_hint).unwrap()
    }

    #[test]
    fn chunk_random() {
        const RANDOM_DATA_SIZE: usize = 32 * 1024 * 1024;
        const SEED: u64 = 23;
        let mut rng = StdRng::seed_from_u64(SEED);
        let mut data = vec![0u8; RANDOM_DATA_SIZE];
        rng.fill_bytes(&mut data);
        let mut reader = Cursor::new(data);
        let chunker = chunker(&mut reader, 0);
        let chunks: Vec<_> = chunker
            .map(|chunk| {
                let chunk = chunk.unwrap();
                (chunk.len(), hash(&chunk))
            })
            .collect();

        assert_ron_snapshot!(chunks);
    }

    #[test]
    fn chunk_empty() {
        let empty: Vec<u8> = vec![];
        let mut reader = Cursor::new(empty);
        let chunker = chunker(&mut reader, 0);

        assert_eq!(0, chunker.into_iter().count());
    }

    #[test]
    fn chunk_empty_wrong_hint() {
        let empty: Vec<u8> = vec![];
        let mut reader = Cursor::new(empty);
        let chunker = chunker(&mut reader, 100);

        assert_eq!(0, chunker.into_iter().count());
    }

    #[test]
    fn chunk_zeros() {
        let mut reader = repeat(0u8);
        let mut chunker = chunker(&mut reader, usize::MAX);

        let chunk = chunker.next().unwrap().unwrap();
        assert_eq!(MIN_SIZE, chunk.len());
    }
}
