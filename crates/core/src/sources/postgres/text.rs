//! Text in a server's encoding, held in Rust strings without loss.
//!
//! PostgreSQL hands out names and SQL in the database's encoding: pg_dump writes a LATIN1
//! database's schema `Größe` as the bytes `47 72 F6 DF 65`, and a SQL_ASCII database may
//! hold any bytes at all. Read as UTF-8 with replacement characters, two such tables
//! became one name and neither could be queried again. So lifeboat keeps what is UTF-8 as
//! it is and each other byte as one character of a private-use range (U+F780 to U+F7FF),
//! and turns such strings back into the very same bytes for the statements it sends in
//! that encoding. A name that really holds one of those 128 private-use characters would
//! be sent as the byte it stands for: no encoding PostgreSQL supports produces them as
//! names in practice.

use std::borrow::Cow;

/// Where the bytes 0x80..=0xFF that are not UTF-8 are kept: byte `b` is `U+F700 + b`.
const BASE: u32 = 0xF700;

/// `bytes` as a string: UTF-8 where they are, each other byte as its private-use character.
#[must_use]
pub fn decode(bytes: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_string();
    }
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        // (never ASCII: ASCII is always valid UTF-8)
        out.extend(
            chunk
                .invalid()
                .iter()
                .filter_map(|b| char::from_u32(BASE + u32::from(*b))),
        );
    }
    out
}

/// The bytes [`decode`] read `text` from.
#[must_use]
pub fn encode(text: &str) -> Cow<'_, [u8]> {
    if !text.chars().any(is_kept_byte) {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if is_kept_byte(c) {
            out.push(u8::try_from(u32::from(c) - BASE).unwrap_or(b'?'));
        } else {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }
    Cow::Owned(out)
}

/// [`encode`] as a program argument.
#[must_use]
pub fn arg(text: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    std::ffi::OsString::from_vec(encode(text).into_owned())
}

/// A file of the server's (`postgresql.auto.conf`, a dump script) as [`decode`] reads it:
/// a setting written in LATIN1 must not make the whole file unreadable.
///
/// # Errors
///
/// When the file cannot be read.
pub fn read_file(path: &std::path::Path) -> std::io::Result<String> {
    std::fs::read(path).map(|b| decode(&b))
}

/// Writes `text` to `path` as the bytes [`decode`] read it from.
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, encode(text))
}

fn is_kept_byte(c: char) -> bool {
    (BASE + 0x80..=BASE + 0xFF).contains(&u32::from(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_and_stray_bytes_come_back_as_they_were() {
        for bytes in [
            &b"Bestellungen_Gr\xf6\xdfe"[..],
            b"Bestellungen_Gr\xe4\xdfe",
            b"plain",
            "Zürich".as_bytes(),
            b"mixed \xc3\xbc and \xfc, cut \xc3",
            b"\xff\xfe\x80",
            b"",
        ] {
            let text = decode(bytes);
            assert_eq!(&*encode(&text), bytes, "{text:?}");
        }
        // two names that differ stay two names
        assert_ne!(
            decode(b"Gr\xf6\xdfe"),
            decode(b"Gr\xe4\xdfe"),
            "distinct bytes must stay distinct"
        );
        assert_eq!(decode("Zürich".as_bytes()), "Zürich");
        assert!(!decode(b"Gr\xf6\xdfe").contains('\u{fffd}'));
    }
}
