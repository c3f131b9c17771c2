//! The patched chunker (vendor/rustic_core, docs/decisions/0007) cuts a stream at exactly
//! the places rustic_core 0.13.0's own loop does, so backups taken before and after the patch
//! deduplicate against each other and any restic/rustic reader sees ordinary blobs.
//!
//! The reference below is rustic_core 0.13.0's loop, restated over a byte slice. Both run
//! with the repository's own random polynomial and lifeboat's chunk sizes, over data chosen
//! to reach every way a chunk can end: inside the warm-up after the minimum size (a crafted
//! block), right at the minimum (zeros), in the multi-lane scan and its tail (random bytes,
//! text), at the maximum size (a repeated pattern that never matches), and the short last
//! chunk.

use std::io::{Cursor, Read};

use lifeboat_core::{
    config::RepositoryConfig,
    repository::{Repo, StreamSource, CHUNK_MAX_KIB, CHUNK_MIN_KIB, CHUNK_SIZE_KIB},
    secret::Secret,
};
use rand::{rngs::StdRng, RngCore, SeedableRng};
use rustic_backend::BackendOptions;
use rustic_cdc::{Rabin64, RollingHash64};
use rustic_core::{
    BackupOptions, ConfigOptions, Credentials, KeyOptions, NoProgressBars, Repository,
    RepositoryOptions, SnapshotOptions,
};
use sha2::{Digest, Sha256};

/// rustic_core 0.13.0's `ChunkIter` (chunker/rabin.rs), byte by byte over a slice.
fn reference_cuts(data: &[u8], poly: u64, size: usize, min: usize, max: usize) -> Vec<usize> {
    let mask = size as u64 - 1;
    let mut rabin = Rabin64::new_with_polynom(6, &poly);
    let mut lens = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let rest = data.len() - pos;
        if rest < min {
            lens.push(rest);
            break;
        }
        let mut len = min;
        rabin.reset_and_prefill_window(&mut data[pos + len - 64..pos + len].iter().copied());
        while len < max && rabin.hash & mask != 0 && pos + len < data.len() {
            rabin.slide(data[pos + len]);
            len += 1;
        }
        lens.push(len);
        pos += len;
    }
    lens
}

/// Minimum chunk size in bytes.
fn min_size() -> usize {
    usize::try_from(CHUNK_MIN_KIB * 1024).unwrap()
}

fn test_data() -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(7);
    let min = min_size();
    // The first chunk ends two bytes into the warm-up: the window is prefilled with the 63
    // bytes before the last byte of the minimum chunk (…, 0x08), whose fingerprint is 0x08;
    // that last byte (0xff) never enters the window, so after two zero bytes the
    // fingerprint is 0x08 << 16, which the 19-bit mask of 512 KiB chunks does not see. Small
    // fingerprints need no reduction, so this holds for every polynomial.
    let mut data = vec![0u8; min + 2];
    data[min - 2] = 0x08;
    data[min - 1] = 0xff;
    // zeros: every fingerprint is 0, so each chunk ends right at the minimum
    data.resize(3 << 20, 0);
    // random bytes: cuts wherever the fingerprint matches
    let mut random = vec![0u8; 24 << 20];
    rng.fill_bytes(&mut random);
    data.extend_from_slice(&random);
    // a repeated 64-byte pattern has one fingerprint everywhere: chunks of the maximum size
    let pattern: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) | 1).collect();
    while data.len() < (33 << 20) {
        data.extend_from_slice(&pattern);
    }
    // text-like bytes and a short, odd-sized tail
    let words = [
        "lifeboat ",
        "prüfung ",
        "order ",
        "42 ",
        "\n",
        "{\"a\": 1} ",
    ];
    while data.len() < (40 << 20) + 12_345 {
        data.extend_from_slice(words[rng.next_u32() as usize % words.len()].as_bytes());
    }
    data
}

/// A reader that returns short, uneven reads, like a pipe.
struct Trickle {
    inner: Cursor<Vec<u8>>,
    n: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.n = (self.n * 7 + 3) % 100_003;
        let want = buf.len().min(1 + self.n);
        self.inner.read(&mut buf[..want])
    }
}

#[test]
fn patched_chunker_cuts_where_rustic_core_does() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RepositoryConfig {
        url: Some(dir.path().join("repo").display().to_string()),
        ..RepositoryConfig::default()
    };
    let password = Secret::new("chunking");
    Repo::init(&cfg, &password, NoProgressBars).unwrap();
    let repo = Repo::open(&cfg, &password, NoProgressBars).unwrap();
    let data = test_data();
    let path = std::path::PathBuf::from("/chunking/stream.bin");

    let source = StreamSource::new(
        path.clone(),
        Trickle {
            inner: Cursor::new(data.clone()),
            n: 1,
        },
    );
    let snap = repo
        .with_indexed_ids(|idx| {
            let snap = SnapshotOptions::default().to_snapshot()?;
            Ok(idx.archive(
                &BackupOptions::default(),
                &source,
                snap,
                std::slice::from_ref(&path),
            )?)
        })
        .unwrap();
    let (poly, stored) = repo
        .with_indexed(|idx| {
            let poly = idx.config().poly()?;
            let node = idx.node_from_snapshot_and_path(&snap, "/chunking/stream.bin")?;
            Ok((poly, node.content.unwrap_or_default()))
        })
        .unwrap();

    let kib = |k: u64| usize::try_from(k * 1024).unwrap();
    let lens = reference_cuts(
        &data,
        poly,
        kib(CHUNK_SIZE_KIB),
        kib(CHUNK_MIN_KIB),
        kib(CHUNK_MAX_KIB),
    );
    assert_eq!(lens[0], min_size() + 2, "the warm-up cut: {lens:?}");
    assert!(
        lens.iter().any(|&l| l == kib(CHUNK_MIN_KIB))
            && lens.iter().any(|&l| l == kib(CHUNK_MAX_KIB)),
        "the data must reach the minimum and the maximum cut: {lens:?}"
    );
    assert_same_chunks(&data, &lens, &stored);
}

/// Dense cuts (16 KiB average, 1 KiB minimum, 1 MiB maximum), through rustic_core directly:
/// thousands of chunks end at every lane of the scan, in every round, in its tail and in
/// the warm-up after the minimum, where each window holds random (non-zero) bytes, so a
/// wrong byte leaving the window changes the fingerprint.
#[test]
fn patched_chunker_cuts_where_rustic_core_does_with_dense_cuts() {
    let (size, min, max) = (16 << 10, 1 << 10, 1 << 20);
    let dir = tempfile::tempdir().unwrap();
    let mut backend = BackendOptions::default();
    backend.repository = Some(dir.path().join("repo").display().to_string());
    let mut opts = RepositoryOptions::default();
    opts.no_cache = true;
    let config = ConfigOptions::default()
        .set_chunk_size(bytesize::ByteSize::b(size))
        .set_chunk_min_size(bytesize::ByteSize::b(min))
        .set_chunk_max_size(bytesize::ByteSize::b(max));
    let repo = Repository::new(&opts, &backend.to_backends().unwrap())
        .unwrap()
        .init(
            &Credentials::Password("dense".to_string()),
            &KeyOptions::default(),
            &config,
        )
        .unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let mut data = vec![0u8; 24 << 20];
    rng.fill_bytes(&mut data);
    let path = std::path::PathBuf::from("/chunking/dense.bin");
    let source = StreamSource::new(
        path.clone(),
        Trickle {
            inner: Cursor::new(data.clone()),
            n: 5,
        },
    );
    let repo = repo.to_indexed_ids().unwrap();
    let snap = repo
        .archive(
            &BackupOptions::default(),
            &source,
            SnapshotOptions::default().to_snapshot().unwrap(),
            std::slice::from_ref(&path),
        )
        .unwrap();
    let repo = repo.drop_index().to_indexed().unwrap();
    let node = repo
        .node_from_snapshot_and_path(&snap, "/chunking/dense.bin")
        .unwrap();
    let stored = node.content.unwrap_or_default();
    let poly = repo.config().poly().unwrap();
    let as_usize = |b: u64| usize::try_from(b).unwrap();
    let lens = reference_cuts(&data, poly, as_usize(size), as_usize(min), as_usize(max));
    let warm_up = lens
        .iter()
        .filter(|&&l| l > as_usize(min) && l <= as_usize(min) + 64)
        .count();
    assert!(
        lens.len() > 1000 && warm_up > 0,
        "{} chunks, {warm_up} cut in the warm-up",
        lens.len()
    );
    assert_same_chunks(&data, &lens, &stored);
}

/// Every stored chunk id is the SHA-256 of the chunk the reference cut.
fn assert_same_chunks(data: &[u8], lens: &[usize], stored: &[rustic_core::DataId]) {
    let mut pos = 0;
    for (i, (len, id)) in lens.iter().zip(stored).enumerate() {
        let want = hex(&Sha256::digest(&data[pos..pos + len]));
        assert!(
            id.to_hex().as_str() == want,
            "chunk {i} (at byte {pos}) differs from rustic_core 0.13.0's, which is {len} bytes long"
        );
        pos += len;
    }
    assert_eq!(stored.len(), lens.len(), "chunk count");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
