//! Credential fingerprints: a keyed hash (HMAC-SHA256) of a watched credential's content, so
//! that alerts can say "the same key was used by two identities" without the content (or an
//! unkeyed hash an attacker could confirm a guess against) ever leaving the agent.
//!
//! The per-install key lives in a file readable by root only (0600); a key file with looser
//! permissions is refused rather than trusted. Fingerprints are cached by
//! (dev, inode, mtime, size) so that a credential read a thousand times is hashed once.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use hmac::{Hmac, Mac};
use lru::LruCache;
use sha2::Sha256;

/// Key length in bytes.
pub(crate) const KEY_LEN: usize = 32;
/// Largest credential file hashed; bigger files are not credentials we fingerprint.
pub(crate) const MAX_FILE: u64 = 1 << 20;

/// Errors of the fingerprint module.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FingerprintError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The key file is readable or writable by others.
    #[error("{0}: key file permissions must be 0600 (or stricter)")]
    Permissions(String),
    /// The key file does not hold a key.
    #[error("{0}: key file must hold exactly {KEY_LEN} bytes")]
    BadKey(String),
    /// The credential is larger than [`MAX_FILE`].
    #[error("{0}: larger than {MAX_FILE} bytes, not fingerprinted")]
    TooLarge(String),
    /// The file is empty: no credential (typically caught between a rewriter's truncation
    /// and its write), and every empty file would share one fingerprint.
    #[error("{0}: empty, not fingerprinted")]
    Empty(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FingerprintError + '_ {
    move |source| FingerprintError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Loads the key at `path`, creating it (0600, 32 bytes from the kernel's CSPRNG) if absent.
pub(crate) fn load_or_create_key(path: &Path) -> Result<[u8; KEY_LEN], FingerprintError> {
    match fs::metadata(path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(FingerprintError::Permissions(path.display().to_string()));
            }
            let bytes = fs::read(path).map_err(io(path))?;
            bytes
                .try_into()
                .map_err(|_| FingerprintError::BadKey(path.display().to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; KEY_LEN];
            fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut key))
                .map_err(io(Path::new("/dev/urandom")))?;
            // create_new: never overwrite a key another agent instance just wrote.
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io(path))?;
            f.write_all(&key)
                .and_then(|_| f.sync_all())
                .map_err(io(path))?;
            Ok(key)
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// Computes and caches credential fingerprints.
pub(crate) struct Fingerprinter {
    key: [u8; KEY_LEN],
    cache: LruCache<(u64, u64, u64, u64), String>,
}

impl Fingerprinter {
    /// A fingerprinter with `key`, caching up to `cache` files.
    pub(crate) fn new(key: [u8; KEY_LEN], cache: usize) -> Self {
        Fingerprinter {
            key,
            cache: LruCache::new(
                std::num::NonZeroUsize::new(cache.max(1)).unwrap_or(std::num::NonZeroUsize::MIN),
            ),
        }
    }

    /// Fingerprint of `content`: `hmac-sha256:` + the first 16 bytes of the MAC in hex.
    pub(crate) fn of_bytes(&self, content: &[u8]) -> String {
        // new_from_slice only fails for key lengths HMAC cannot take; 32 bytes always works.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(content);
        let out = mac.finalize().into_bytes();
        format!("hmac-sha256:{}", hex::encode(&out[..16]))
    }

    /// Fingerprint of the file at `path`, cached by (dev, ino, mtime ns, size) from its metadata.
    pub(crate) fn of_file(&mut self, path: &Path) -> Result<String, FingerprintError> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(path).map_err(io(path))?;
        let key = (
            meta.dev(),
            meta.ino(),
            (meta.mtime() as u64)
                .wrapping_mul(1_000_000_000)
                .wrapping_add(meta.mtime_nsec() as u64),
            meta.size(),
        );
        if let Some(fp) = self.cache.get(&key) {
            return Ok(fp.clone());
        }
        if meta.size() > MAX_FILE {
            return Err(FingerprintError::TooLarge(path.display().to_string()));
        }
        let content = fs::read(path).map_err(io(path))?;
        if content.is_empty() {
            return Err(FingerprintError::Empty(path.display().to_string()));
        }
        let fp = self.of_bytes(&content);
        self.cache.put(key, fp.clone());
        Ok(fp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        let k1 = load_or_create_key(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_create_key(&p).unwrap(), k1);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create_key(&p),
            Err(FingerprintError::Permissions(_))
        ));
    }

    #[test]
    fn keyed_stable_and_content_free() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("id_rsa");
        fs::write(&f, b"SECRET-KEY-MATERIAL").unwrap();
        let mut a = Fingerprinter::new([1; KEY_LEN], 8);
        let b = Fingerprinter::new([2; KEY_LEN], 8);
        let fa = a.of_file(&f).unwrap();
        assert_eq!(fa, a.of_bytes(b"SECRET-KEY-MATERIAL"));
        assert_ne!(fa, b.of_bytes(b"SECRET-KEY-MATERIAL"));
        assert!(!fa.contains("SECRET"));
        assert_eq!(fa.len(), "hmac-sha256:".len() + 32);
        // Cached: same answer for the same (dev, ino, mtime, size).
        assert_eq!(a.of_file(&f).unwrap(), fa);
    }

    #[test]
    fn empty_files_have_no_fingerprint() {
        // Two credentials caught truncated by their rewriters must not look like one copy.
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = (dir.path().join("x"), dir.path().join("y"));
        fs::write(&x, b"").unwrap();
        fs::write(&y, b"").unwrap();
        let mut a = Fingerprinter::new([1; KEY_LEN], 8);
        assert!(matches!(a.of_file(&x), Err(FingerprintError::Empty(_))));
        assert!(matches!(a.of_file(&y), Err(FingerprintError::Empty(_))));
    }
}
