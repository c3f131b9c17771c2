//! Sealing a WAL object as a stream: the segment is compressed as one zstd frame on every
//! core, and each piece of compressed output is encrypted (restic's AES-256-CTR +
//! Poly1305-AES, the repository's master key) and handed on as soon as zstd produces it.
//! Encryption, the write and the kernel's writeback then run while the rest of the segment
//! is still being compressed, instead of after it: the archiver waits for every push.
//!
//! The bytes are exactly those of the one-shot AEAD the fetch side opens (tested below).

use aes::{
    cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher},
    Aes128, Aes256,
};
use poly1305::{universal_hash::UniversalHash, Poly1305};
use zstd::zstd_safe::{self, zstd_sys::ZSTD_EndDirective, CCtx, CParameter, InBuffer, OutBuffer};

use crate::error::{Error, Result};

/// Size of the pieces compressed output is handed on in: small enough that the first
/// piece is ready long before the last job of the frame, large enough to keep the number
/// of writes low.
const PIECE: usize = 256 * 1024;

/// The repository master key as restic lays it out: AES-256 key, AES-128 key (for the
/// MAC's nonce encryption), Poly1305 `r`.
pub(super) type MasterKey = [u8; 64];

/// Encrypts and authenticates a message delivered in pieces of any size.
pub(super) struct Sealer {
    ctr: ctr::Ctr64BE<Aes256>,
    mac: Poly1305,
    /// Ciphertext bytes not yet MACed (Poly1305 consumes whole 16-byte blocks, and only
    /// the last block of the message may be partial).
    carry: [u8; 16],
    carry_len: usize,
}

impl Sealer {
    pub(super) fn new(key: &MasterKey, nonce: &[u8; 16]) -> Self {
        let mut s = aes::Block::clone_from_slice(nonce);
        Aes128::new_from_slice(&key[32..48])
            .expect("16-byte key")
            .encrypt_block(&mut s);
        let mut mac_key = poly1305::Key::default();
        mac_key[..16].copy_from_slice(&key[48..64]);
        mac_key[16..].copy_from_slice(&s);
        Self {
            ctr: ctr::Ctr64BE::<Aes256>::new_from_slices(&key[..32], nonce)
                .expect("32-byte key, 16-byte nonce"),
            mac: Poly1305::new(&mac_key),
            carry: [0; 16],
            carry_len: 0,
        }
    }

    /// Encrypts `buf` in place (the next bytes of the message) and adds it to the MAC.
    pub(super) fn seal(&mut self, buf: &mut [u8]) {
        self.ctr.apply_keystream(buf);
        let mut rest: &[u8] = buf;
        if self.carry_len > 0 {
            let n = rest.len().min(16 - self.carry_len);
            self.carry[self.carry_len..self.carry_len + n].copy_from_slice(&rest[..n]);
            self.carry_len += n;
            rest = &rest[n..];
            if self.carry_len < 16 {
                return;
            }
            self.mac.update_padded(&self.carry);
            self.carry_len = 0;
        }
        let whole = rest.len() / 16 * 16;
        // whole blocks only, so the padding of update_padded never applies
        self.mac.update_padded(&rest[..whole]);
        let tail = &rest[whole..];
        self.carry[..tail.len()].copy_from_slice(tail);
        self.carry_len = tail.len();
    }

    /// The tag over everything sealed.
    pub(super) fn finish(self) -> [u8; 16] {
        self.mac
            .compute_unpadded(&self.carry[..self.carry_len])
            .into()
    }
}

fn zstd_error(code: usize) -> Error {
    Error::internal(format!(
        "compressing a WAL file: {}",
        zstd_safe::get_error_name(code)
    ))
}

/// Compresses `data` as one zstd frame at `level`, with a worker per core (at most four),
/// calling `out` with each piece of the frame as soon as it is produced.
///
/// # Errors
///
/// A compression error, or the first error of `out`.
pub(super) fn compress_pieces(
    data: &[u8],
    level: i32,
    out: &mut dyn FnMut(&mut [u8]) -> Result<()>,
) -> Result<()> {
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .map_err(zstd_error)?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if workers > 1 {
        // a libzstd built without threads refuses workers: one thread still archives
        let _ = cctx.set_parameter(CParameter::NbWorkers(workers as u32));
    }
    cctx.set_pledged_src_size(Some(data.len() as u64))
        .map_err(zstd_error)?;
    let mut input = InBuffer::around(data);
    let mut piece = vec![0u8; PIECE];
    loop {
        let mut output = OutBuffer::around(piece.as_mut_slice());
        let left = cctx
            .compress_stream2(&mut output, &mut input, ZSTD_EndDirective::ZSTD_e_end)
            .map_err(zstd_error)?;
        let n = output.pos();
        if n > 0 {
            out(&mut piece[..n])?;
        }
        if left == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use aes256ctr_poly1305aes::{aead::Aead, Aes256CtrPoly1305Aes};
    use rand::{Rng, RngCore};

    use super::*;

    #[test]
    fn pieces_of_any_size_seal_like_the_one_shot_aead() {
        let mut rng = rand::rng();
        for len in [0usize, 1, 15, 16, 17, 100, 4096, 70_001] {
            let mut key = [0u8; 64];
            let mut nonce = [0u8; 16];
            rng.fill_bytes(&mut key);
            rng.fill_bytes(&mut nonce);
            let mut plain = vec![0u8; len];
            rng.fill_bytes(&mut plain);

            let mut sealed = plain.clone();
            let mut sealer = Sealer::new(&key, &nonce);
            let mut at = 0;
            while at < sealed.len() {
                let n = rng.random_range(1..=40).min(sealed.len() - at);
                sealer.seal(&mut sealed[at..at + n]);
                at += n;
            }
            sealed.extend_from_slice(&sealer.finish());

            let aead = Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(&key));
            let nonce = aes256ctr_poly1305aes::Nonce::from_slice(&nonce);
            assert_eq!(
                aead.encrypt(nonce, plain.as_slice()).expect("encrypts"),
                sealed,
                "{len} bytes"
            );
            assert_eq!(
                aead.decrypt(nonce, sealed.as_slice()).expect("opens"),
                plain
            );
        }
    }

    #[test]
    fn the_pieces_make_one_frame_of_the_input() {
        // compressible but not trivially: several zstd jobs, several pieces
        let mut data = Vec::with_capacity(24 << 20);
        let mut rng = rand::rng();
        while data.len() < 24 << 20 {
            let word = rng.random_range(0u32..5000).to_string();
            data.extend_from_slice(word.as_bytes());
            data.push(b' ');
        }
        let mut frame = Vec::new();
        let mut pieces = 0;
        compress_pieces(&data, 1, &mut |p| {
            pieces += 1;
            frame.extend_from_slice(p);
            Ok(())
        })
        .expect("compresses");
        assert!(pieces > 1, "one piece only: nothing could overlap");
        assert!(frame.len() < data.len() / 2);
        assert_eq!(
            zstd::bulk::decompress(&frame, data.len()).expect("one frame"),
            data
        );
    }

    #[test]
    fn an_error_of_the_receiver_stops_compression() {
        let data = vec![7u8; 4 << 20];
        let err = compress_pieces(&data, 1, &mut |_| Err(Error::internal("disk full")))
            .expect_err("the receiver's error");
        assert!(err.to_string().contains("disk full"), "{err}");
    }
}
