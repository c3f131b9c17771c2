//! Signed audit heads: an Ed25519 signature over the audit log's newest hash, made with a
//! key kept outside the repository. Someone who can rewrite the repository can build a new,
//! self-consistent log, but cannot sign its head; a signed statement kept with the evidence
//! proves which log existed when it was signed, and that nothing before it was changed or cut.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{audit, Repo};
use crate::{
    error::{Error, ErrorKind, Result},
    secret::write_private_file,
};

/// A signed statement about the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    /// Hash of the newest entry when signed.
    pub head: String,
    /// Entries in the log when signed.
    pub entries: usize,
    /// When it was signed.
    pub signed_at: Timestamp,
    /// The signer's public key (hex); verification uses the key the verifier trusts.
    pub public_key: String,
    /// Ed25519 signature (hex) over `lifeboat-audit-head\n<head>\n<entries>\n<signed_at>\n`.
    pub signature: String,
}

impl SignedHead {
    fn message(head: &str, entries: usize, signed_at: Timestamp) -> String {
        format!("lifeboat-audit-head\n{head}\n{entries}\n{signed_at}\n")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str, what: &str) -> Result<[u8; N]> {
    let s = s.trim();
    let bad = || Error::config(format!("{what} is not {N} bytes of hex"));
    if s.len() != 2 * N {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading the {what} {}", path.display()), e))
}

/// Creates a key pair: `<prefix>.key` (secret, mode 0600) and `<prefix>.pub`.
///
/// # Errors
///
/// [`ErrorKind::Config`] when either file exists (never overwritten), or a write error.
pub fn generate(prefix: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let key_path = prefix.with_extension("key");
    let pub_path = prefix.with_extension("pub");
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(Error::config(format!("{} exists", p.display()))
                .hint("keys are never overwritten: choose another name"));
        }
    }
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
    let key = SigningKey::from_bytes(&seed);
    write_private_file(&key_path, &format!("{}\n", hex(&seed)))?;
    // the key auditors trust: readable by all, writable by no one else, whatever the umask
    let mut public = std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new().write(true).create_new(true),
        0o644,
    )
    .open(&pub_path)
    .map_err(|e| Error::io(pub_path.display(), e))?;
    {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        public
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .and_then(|()| {
                public.write_all(format!("{}\n", hex(key.verifying_key().as_bytes())).as_bytes())
            })
            .map_err(|e| Error::io(pub_path.display(), e))?;
    }
    Ok((key_path, pub_path))
}

/// The secret key in `key_file`, refused when it is a public key (both are 32 bytes of
/// hex: signing with a public key "works" and fails only at the auditor's check, as if
/// the statement had been tampered with); with a warning when others may read it.
fn signing_key(key_file: &Path) -> Result<(SigningKey, Option<String>)> {
    let text = read(key_file, "signing key")?;
    let public_beside = key_file.with_extension("pub");
    let public_text = (public_beside != key_file)
        .then(|| std::fs::read_to_string(&public_beside).ok())
        .flatten();
    if key_file.extension().is_some_and(|x| x == "pub")
        || public_text
            .as_deref()
            .is_some_and(|p| p.trim() == text.trim())
    {
        return Err(Error::config(format!(
            "{} is the public key: signing needs the secret one",
            key_file.display()
        ))
        .hint("give the .key file `lifeboat audit keygen` wrote beside it; the .pub goes to whoever checks the statements"));
    }
    let seed: [u8; 32] = unhex(&text, "the signing key")?;
    let key = SigningKey::from_bytes(&seed);
    if let Some(p) = public_text {
        if p.trim() != hex(key.verifying_key().as_bytes()) {
            return Err(Error::config(format!(
                "the signing key {} does not belong to the public key beside it ({})",
                key_file.display(),
                public_beside.display()
            ))
            .hint("statements signed with it would not verify with that public key: give the .key file made with that .pub, or move the stray .pub away"));
        }
    }
    let warning = std::fs::metadata(key_file)
        .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o077 != 0)
        .then(|| {
            format!(
                "the signing key {} may be read by other users: `chmod 600` it (whoever reads it can sign statements in your name)",
                key_file.display()
            )
        });
    Ok((key, warning))
}

/// Checks the log, then signs its head with the secret key in `key_file`.
///
/// # Errors
///
/// [`ErrorKind::Integrity`] when the log is not intact (a broken log is never signed), or
/// a key or repository error.
pub fn sign(repo: &Repo, key_file: &Path) -> Result<SignedHead> {
    let (key, warning) = signing_key(key_file)?;
    if let Some(w) = warning {
        repo.notice(w);
    }
    let verdict = audit::verify(repo, None)?;
    if !verdict.ok() {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "the audit log is not intact: {}",
                verdict.problems.join("; ")
            ),
        )
        .hint("a broken log is not signed; investigate with `lifeboat audit verify`"));
    }
    let head = verdict.head.unwrap_or_default();
    let signed_at = Timestamp::now();
    let sig = key.sign(SignedHead::message(&head, verdict.entries, signed_at).as_bytes());
    Ok(SignedHead {
        head,
        entries: verdict.entries,
        signed_at,
        public_key: hex(key.verifying_key().as_bytes()),
        signature: hex(&sig.to_bytes()),
    })
}

/// Checks `statement`'s signature with the trusted public key in `pub_file`, then the log
/// against the signed head (it must still be in the chain, and the chain intact).
///
/// # Errors
///
/// [`ErrorKind::Integrity`] for a bad signature; a key or repository error.
pub fn verify_signed(
    repo: &Repo,
    statement: &SignedHead,
    pub_file: &Path,
) -> Result<audit::AuditVerdict> {
    let public = read(pub_file, "public key")?;
    verify_signed_entries(&audit::entries(repo)?, statement, &public)
}

/// [`verify_signed`] on entries already read, with the public key as its hex text.
fn verify_signed_entries(
    entries: &[audit::Entry],
    statement: &SignedHead,
    public: &str,
) -> Result<audit::AuditVerdict> {
    let public: [u8; 32] = unhex(public, "the public key")?;
    let key = VerifyingKey::from_bytes(&public)
        .map_err(|_| Error::config("the public key is not a valid Ed25519 key"))?;
    let sig: [u8; 64] = unhex(&statement.signature, "the signature")?;
    let msg = SignedHead::message(&statement.head, statement.entries, statement.signed_at);
    key.verify(msg.as_bytes(), &Signature::from_bytes(&sig))
        .map_err(|_| {
            Error::new(
                ErrorKind::Integrity,
                "the signed head's signature does not verify with the trusted public key",
            )
            .hint("the statement was changed, or signed with another key")
        })?;
    let mut verdict = audit::verify_entries(entries, Some(&statement.head));
    // a valid signature proves the log only while the signed entry is still in it and the
    // chain up to it is intact: a log rewritten and re-hashed after it must not count
    let signed_prefix_intact = entries
        .iter()
        .position(|e| e.hash == statement.head)
        .is_some_and(|i| {
            audit::verify_entries(&entries[..=i], Some(&statement.head))
                .problems
                .is_empty()
        });
    verdict.signed_heads_verified = usize::from(signed_prefix_intact);
    if !signed_prefix_intact {
        verdict.problems.push(format!(
            "the signed head {} (entry {}) has a valid signature, but the log no longer matches it up to that entry",
            &statement.head[..16.min(statement.head.len())],
            statement.entries
        ));
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    use audit::test_chain as chain;

    fn signed(key: &SigningKey, entries: &[audit::Entry]) -> SignedHead {
        let head = entries.last().unwrap().hash.clone();
        let signed_at = Timestamp::from_second(1_800_000_000).unwrap();
        let sig = key.sign(SignedHead::message(&head, entries.len(), signed_at).as_bytes());
        SignedHead {
            head,
            entries: entries.len(),
            signed_at,
            public_key: hex(key.verifying_key().as_bytes()),
            signature: hex(&sig.to_bytes()),
        }
    }

    #[test]
    fn a_public_key_or_a_stranger_key_is_no_signing_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = generate(&dir.path().join("k")).unwrap();
        let (key, warning) = signing_key(&secret).unwrap();
        assert!(warning.is_none());
        assert_eq!(
            hex(key.verifying_key().as_bytes()),
            std::fs::read_to_string(&public).unwrap().trim()
        );
        let e = signing_key(&public).unwrap_err();
        assert!(e.to_string().contains("is the public key"), "{e}");
        // the public key copied under another name
        let copy = dir.path().join("k-copy.key");
        std::fs::copy(&public, &copy).unwrap();
        std::fs::copy(&public, dir.path().join("k-copy.pub")).unwrap();
        assert!(signing_key(&copy)
            .unwrap_err()
            .to_string()
            .contains("is the public key"));
        // a secret key beside another pair's public key
        let (other, _) = generate(&dir.path().join("other")).unwrap();
        std::fs::copy(&other, &secret).unwrap();
        let e = signing_key(&secret).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(signing_key(&other)
            .unwrap()
            .1
            .unwrap()
            .contains("chmod 600"));
    }

    #[test]
    fn a_good_signature_is_counted_as_verified() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = hex(key.verifying_key().as_bytes());
        let entries = chain(3);
        let statement = signed(&key, &entries[..2]);
        let v = verify_signed_entries(&entries, &statement, &public).unwrap();
        assert!(v.ok(), "{:?}", v.problems);
        assert_eq!(v.signed_heads_verified, 1);
        assert_eq!(
            audit::verify_entries(&entries, None).signed_heads_verified,
            0
        );
    }

    #[test]
    fn a_signed_head_of_a_rewritten_log_is_not_counted() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = hex(key.verifying_key().as_bytes());
        let entries = chain(4);
        let statement = signed(&key, &entries[..3]);
        // entry 2 edited, and the whole log re-hashed from there: a self-consistent chain
        let mut forged = entries.clone();
        forged[1].details = "nothing to see".into();
        for i in 1..forged.len() {
            forged[i].prev = forged[i - 1].hash.clone();
            forged[i].hash = forged[i].compute_hash();
        }
        assert!(audit::verify_entries(&forged, None).ok());
        let v = verify_signed_entries(&forged, &statement, &public).unwrap();
        assert_eq!(v.signed_heads_verified, 0);
        assert!(!v.ok());
        // an edit after the signed entry leaves the signed part authentic
        let mut later = entries.clone();
        later[3].details = "edited after the signature".into();
        let v = verify_signed_entries(&later, &statement, &public).unwrap();
        assert_eq!(v.signed_heads_verified, 1);
        assert!(!v.ok(), "the edit is still a problem");
    }

    #[test]
    fn a_signature_by_another_key_is_refused() {
        let entries = chain(2);
        let statement = signed(&SigningKey::from_bytes(&[7; 32]), &entries);
        let other = hex(SigningKey::from_bytes(&[8; 32]).verifying_key().as_bytes());
        let e = verify_signed_entries(&entries, &statement, &other).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity);
    }
}
