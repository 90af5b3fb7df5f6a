//! The node's signing identity: an Ed25519 key created on first start.
//!
//! `node.key` holds the signer key in the C2SP note text form
//! (`PRIVATE+KEY+<name>+<id>+<base64>`), readable only by its owner. The key name is the
//! checkpoint origin, fixed for the ledger's life: checkpoints signed under one name
//! cannot be re-signed under another.

use assay_ledger::note::Signer;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// Why the identity cannot be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the key file failed.
    #[error("node key {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is not a signer key.
    #[error("node key {path} is not a valid signer key: {message}")]
    Invalid {
        /// The key file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The configured origin differs from the key's name.
    #[error("config sets origin `{configured}` but this data directory's key is named `{existing}`; the origin cannot change, remove `origin` from the config or use another data dir")]
    OriginChanged {
        /// From the config.
        configured: String,
        /// From the key file.
        existing: String,
    },
}

/// Loads the node key, creating it (and its name) on first start.
pub fn load_or_create(key_file: &Path, origin: &str) -> Result<Signer, IdentityError> {
    let path = key_file.display().to_string();
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(key_file) {
        Ok(text) => {
            let signer =
                Signer::from_key_text(text.trim()).map_err(|e| IdentityError::Invalid {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            if !origin.is_empty() && origin != signer.name() {
                return Err(IdentityError::OriginChanged {
                    configured: origin.into(),
                    existing: signer.name().into(),
                });
            }
            Ok(signer)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| io(std::io::Error::other(e.to_string())))?;
            let name = if origin.is_empty() {
                // Derived from the key so two nodes' default names differ.
                let probe =
                    Signer::from_seed("probe", seed).map_err(|e| IdentityError::Invalid {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                let digest = Sha256::digest(probe.verifier().to_key_text().as_bytes());
                format!("assay.local/{}", hex::encode(&digest[..4]))
            } else {
                origin.to_string()
            };
            let signer = Signer::from_seed(&name, seed).map_err(|e| IdentityError::Invalid {
                path: path.clone(),
                message: e.to_string(),
            })?;
            write_private(key_file, signer.to_key_text().as_bytes()).map_err(io)?;
            tracing::info!(key = %key_file.display(), origin = %name, "created node signing key");
            Ok(signer)
        }
        Err(e) => Err(io(e)),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded_and_origin_is_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("node.key");
        let a = load_or_create(&key, "").unwrap();
        assert!(a.name().starts_with("assay.local/"));
        let b = load_or_create(&key, "").unwrap();
        assert_eq!(a.verifier().to_key_text(), b.verifier().to_key_text());
        let err = load_or_create(&key, "other.example/log").unwrap_err();
        assert!(err.to_string().contains("cannot change"), "{err}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
