//! What identifies a dataset's contents: a SHA-256 over its bytes. The native manifest records
//! it when a dataset is written, and every run's `config.json` records the fingerprint of the
//! data it trained on, so that `--resume`, `study --collect` and `eval --data` can tell two
//! datasets apart even when they have the same name and shape.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::native;

/// Every fingerprint starts with the name of its hash.
pub const PREFIX: &str = "sha256:";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feed `path`'s bytes to `hasher` in 1 MiB reads (a MOSEI split is gigabytes).
fn hash_file(hasher: &mut Sha256, path: &Path) -> Result<()> {
    let mut file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// The fingerprint of a native dataset's split files as they are on disk: SHA-256 over, for
/// each of train, valid and test that exists, its name, its byte length and its bytes. The
/// manifest is left out (it holds the fingerprint itself, and paths that do not change the data).
pub fn compute_native(dir: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    for name in native::SPLITS {
        let path = dir.join(format!("{name}.safetensors"));
        if !path.exists() {
            continue;
        }
        let len = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?.len();
        hasher.update(name.as_bytes());
        hasher.update(len.to_le_bytes());
        hash_file(&mut hasher, &path)?;
    }
    Ok(format!("{PREFIX}{}", hex(&hasher.finalize())))
}

/// The fingerprint of a dataset file or directory: a native directory's recorded one (computed
/// when its manifest predates fingerprints), or the SHA-256 of a pickle file's bytes.
pub fn fingerprint(path: &Path) -> Result<String> {
    if path.is_dir() {
        let manifest = native::read_manifest(path)?;
        return match manifest.fingerprint {
            Some(f) => Ok(f),
            None => compute_native(path),
        };
    }
    if !path.exists() {
        crate::bail_input!("{}: no such dataset", path.display());
    }
    let mut hasher = Sha256::new();
    hash_file(&mut hasher, path)?;
    Ok(format!("{PREFIX}{}", hex(&hasher.finalize())))
}

/// The first 12 hex digits, for tables and messages (`sha256:0123456789ab`).
pub fn short(fingerprint: &str) -> String {
    let digits = fingerprint.strip_prefix(PREFIX).unwrap_or(fingerprint);
    format!("{PREFIX}{}", &digits[..digits.len().min(12)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of "abc" (FIPS 180-2, appendix B.1).
    #[test]
    fn pickle_fingerprint_is_the_sha256_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.pkl");
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(fingerprint(&file).unwrap(), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(short("sha256:ba7816bf8f01cfea414140de"), "sha256:ba7816bf8f01");
    }
}
