//! The state directory (`[acme] state_dir`): the ACME account and each
//! name's certificate chain and key, owner-only (directory 0700, files
//! 0600), every file written atomically (a temporary file in the same
//! directory, synced, then renamed over the old one), so a crash leaves
//! the old file or the new one, never half of one.

use crate::tls::{Certificate, TlsError};
use instant_acme::AccountCredentials;
use serde::{Deserialize, Serialize};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Most bytes the account file may hold (a key and a URL: under 1 KiB).
pub const MAX_ACCOUNT_BYTES: u64 = 64 * 1024;

/// Why the state directory or a file in it could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or the directory could not be read, written or made.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The account file is not what floe writes.
    #[error("{path}: not an ACME account file ({detail})")]
    BadAccount {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

/// The account file: the credentials and the directory they belong to (a
/// changed `[acme] directory` makes a new account).
#[derive(Serialize)]
struct AccountFileOut<'a> {
    directory: &'a str,
    credentials: &'a AccountCredentials,
}

/// [`AccountFileOut`] as read back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountFileIn {
    directory: String,
    credentials: AccountCredentials,
}

/// Parses an account file: the directory URL and the credentials.
pub fn parse_account(bytes: &[u8]) -> Result<(String, AccountCredentials), serde_json::Error> {
    let file: AccountFileIn = serde_json::from_slice(bytes)?;
    Ok((file.directory, file.credentials))
}

/// The owner-only directory of the account and certificates.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens `dir`, making it (and its parents) when missing; the
    /// directory itself is made owner-only (0700).
    pub fn open(dir: &Path) -> Result<StateDir, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    /// The certificate chain file of `name`.
    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    /// The private key file of `name`.
    pub fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// The account file.
    pub fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    /// The certificate held for `name`: `None` when there is none on disk,
    /// else it loaded and checked (key matches) or why not.
    pub fn certificate(&self, name: &str) -> Option<Result<Certificate, TlsError>> {
        let (cert, key) = (self.cert_path(name), self.key_path(name));
        if !cert.exists() && !key.exists() {
            return None;
        }
        Some(Certificate::load(&cert, &key))
    }

    /// Keeps `chain` and `key` (PEM) as `name`'s certificate: the key
    /// first, so a chain on disk always has its key beside it, then the
    /// chain (each atomically).
    pub fn save_certificate(&self, name: &str, chain: &str, key: &str) -> Result<(), StoreError> {
        write_atomic(&self.key_path(name), key.as_bytes())?;
        write_atomic(&self.cert_path(name), chain.as_bytes())
    }

    /// The account kept for `directory`: `Ok(None)` when there is no
    /// account file or it belongs to another directory.
    pub fn account(&self, directory: &str) -> Result<Option<AccountCredentials>, StoreError> {
        let path = self.account_path();
        let mut bytes = Vec::new();
        match fs::File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
            Ok(f) => f
                .take(MAX_ACCOUNT_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?,
        };
        if bytes.len() as u64 > MAX_ACCOUNT_BYTES {
            return Err(StoreError::BadAccount {
                path,
                detail: format!("more than {MAX_ACCOUNT_BYTES} bytes"),
            });
        }
        let (dir, credentials) = parse_account(&bytes).map_err(|e| StoreError::BadAccount {
            path,
            detail: e.to_string(),
        })?;
        Ok((dir == directory).then_some(credentials))
    }

    /// Keeps `credentials` as the account of `directory`.
    pub fn save_account(
        &self,
        directory: &str,
        credentials: &AccountCredentials,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(&AccountFileOut {
            directory,
            credentials,
        })
        .map_err(|e| StoreError::BadAccount {
            path: self.account_path(),
            detail: e.to_string(),
        })?;
        write_atomic(&self.account_path(), &json)
    }

    /// Forgets the account (the CA no longer knows it).
    pub fn forget_account(&self) {
        let _ = fs::remove_file(self.account_path());
    }
}

/// Writes `bytes` to `path` owner-only (0600) and atomically: a temporary
/// file beside it, synced, renamed over `path`, and the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_directory_and_its_files_are_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state/acme");
        let store = StateDir::open(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let c = rcgen::generate_simple_self_signed(vec!["a.example.org".into()]).unwrap();
        store
            .save_certificate(
                "a.example.org",
                &c.cert.pem(),
                &c.signing_key.serialize_pem(),
            )
            .unwrap();
        for p in [
            store.cert_path("a.example.org"),
            store.key_path("a.example.org"),
        ] {
            assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600, "{p:?}");
        }
        let cert = store.certificate("a.example.org").unwrap().unwrap();
        assert_eq!(cert.names, ["a.example.org"]);
        assert!(store.certificate("b.example.org").is_none());
        // Only the two files: no temporary file is left.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
    }

    #[test]
    fn a_broken_account_file_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateDir::open(tmp.path()).unwrap();
        assert!(matches!(store.account("https://ca/dir"), Ok(None)));
        for junk in [&b"{"[..], b"null", b"{\"directory\":1}", &[0xff; 10]] {
            fs::write(store.account_path(), junk).unwrap();
            let Err(err) = store.account("https://ca/dir") else {
                panic!("{junk:?} read as an account");
            };
            assert!(
                err.to_string().contains("not an ACME account file"),
                "{err}"
            );
        }
        fs::write(
            store.account_path(),
            vec![b' '; MAX_ACCOUNT_BYTES as usize + 1],
        )
        .unwrap();
        assert!(store.account("https://ca/dir").is_err());
    }

    /// Credentials as instant-acme writes them (its own test's key).
    const CREDENTIALS: &str = r#"{"id":"id","key_pkcs8":"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJVWC_QzOTCS5vtsJp2IG-UDc8cdDfeoKtxSZxaznM-mhRANCAAQenCPoGgPFTdPJ7VLLKt56RxPlYT1wNXnHc54PEyBg3LxKaH0-sJkX0mL8LyPEdsfL_Oz4TxHkWLJGrXVtNhfH","directory":"https://ca/dir"}"#;

    #[test]
    fn the_account_is_kept_for_its_directory_only() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateDir::open(tmp.path()).unwrap();
        let credentials: AccountCredentials = serde_json::from_str(CREDENTIALS).unwrap();
        store.save_account("https://ca/dir", &credentials).unwrap();
        assert_eq!(
            fs::metadata(store.account_path()).unwrap().mode() & 0o777,
            0o600
        );
        assert!(matches!(store.account("https://ca/dir"), Ok(Some(_))));
        assert!(matches!(store.account("https://other/dir"), Ok(None)));
        store.forget_account();
        assert!(matches!(store.account("https://ca/dir"), Ok(None)));
    }
}
