//! Secrets at rest: the key that seals marketplace credentials and webhook secrets in the store
//! (XChaCha20-Poly1305 with a random nonce per write, the record's tenant, id and field as
//! associated data, so a sealed value copied onto another record does not open), and where that
//! key comes from: `CAMPAIGND_SECRETS__KEY`, or a key file created 0600 on first start. Keys are
//! zeroized when dropped.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::SecretsConfig;

/// The first byte of a sealed value.
const SEALED: u8 = 0xC5;
const NONCE: usize = 24;
const KEY_ID: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("a stored secret was sealed with a key this service does not have (key id {0}); is the key file the one this data was written with?")]
    UnknownKey(String),
    #[error(
        "a stored secret does not open with its key: it was altered, or copied from another record"
    )]
    Tampered,
    #[error("a stored secret is not in the sealed format")]
    Format,
    #[error("the secrets key {0}")]
    BadKey(String),
    #[error("the key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One 32-byte key and its id (the first bytes of its SHA-256), which sealed values carry so
/// that the right key opens them during a rotation.
struct Key {
    bytes: Zeroizing<[u8; 32]>,
    id: [u8; KEY_ID],
}

impl Key {
    fn new(bytes: Zeroizing<[u8; 32]>) -> Key {
        let hash = Sha256::digest(bytes.as_slice());
        let mut id = [0u8; KEY_ID];
        id.copy_from_slice(&hash[..KEY_ID]);
        Key { bytes, id }
    }

    fn generate() -> Key {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(bytes.as_mut_slice());
        Key::new(bytes)
    }

    fn parse(text: &str) -> Result<Key, SecretError> {
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| SecretError::BadKey("is not base64".to_string()))?,
        );
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| SecretError::BadKey(format!("has {} bytes, not 32", decoded.len())))?;
        Ok(Key::new(Zeroizing::new(bytes)))
    }

    fn encoded(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.bytes.as_slice()))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.bytes.as_slice().into())
    }
}

/// The key values are sealed with, and older keys that still open what they sealed.
pub struct Keys {
    current: Key,
    old: Vec<Key>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("current", &hex::encode(self.current.id))
            .field("old", &self.old.len())
            .finish()
    }
}

impl Keys {
    /// A fresh random key (tests, and a first start).
    pub fn generate() -> Keys {
        Keys {
            current: Key::generate(),
            old: Vec::new(),
        }
    }

    /// A key given as base64 of 32 bytes.
    pub fn parse(text: &str) -> Result<Keys, SecretError> {
        Ok(Keys {
            current: Key::parse(text)?,
            old: Vec::new(),
        })
    }

    /// These keys, opening also what `older` sealed.
    pub fn reading(mut self, older: Keys) -> Keys {
        self.old.push(older.current);
        self.old.extend(older.old);
        self
    }

    /// The current key as base64, for a key file or an operator.
    pub fn encoded(&self) -> Zeroizing<String> {
        self.current.encoded()
    }

    /// The current key's id, as hex.
    pub fn id(&self) -> String {
        hex::encode(self.current.id)
    }

    /// Seals `plaintext` under the current key, bound to `context` (tenant, record and field).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .current
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            // XChaCha20-Poly1305 fails only on inputs over 256 GiB.
            .expect("a secret of reasonable size seals");
        let mut out = Vec::with_capacity(1 + KEY_ID + NONCE + sealed.len());
        out.push(SEALED);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a value `seal` made with one of these keys for the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        if sealed.len() < 1 + KEY_ID + NONCE || sealed[0] != SEALED {
            return Err(SecretError::Format);
        }
        let id = &sealed[1..1 + KEY_ID];
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
            .ok_or_else(|| SecretError::UnknownKey(hex::encode(id)))?;
        let nonce = &sealed[1 + KEY_ID..1 + KEY_ID + NONCE];
        key.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: &sealed[1 + KEY_ID + NONCE..],
                    aad: context.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SecretError::Tampered)
    }

    /// Whether `sealed` was sealed with the current key.
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.len() > KEY_ID && sealed[0] == SEALED && sealed[1..1 + KEY_ID] == self.current.id
    }
}

/// Where the key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `CAMPAIGND_SECRETS__KEY` (`secrets.key`).
    Config,
    /// An existing key file.
    File(PathBuf),
    /// No key file existed: this new key is written there once the store is known not to hold
    /// anything sealed with another key (`persist`).
    New(PathBuf),
}

/// The key file's path: `secrets.key_file`, or beside the data directory (`DATA_DIR.key`), so a
/// copy of the data directory alone does not carry its key.
pub fn key_file(config: &SecretsConfig, data_dir: &Path) -> PathBuf {
    if !config.key_file.as_os_str().is_empty() {
        return config.key_file.clone();
    }
    let mut name = data_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "campaignd-data".into());
    name.push(".key");
    data_dir.with_file_name(name)
}

/// The path of a rotation's new key while the rotation runs.
pub fn pending_file(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_os_string();
    name.push(".new");
    PathBuf::from(name)
}

fn read_key(path: &Path) -> Result<Keys, SecretError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        })?,
    );
    Keys::parse(&text).map_err(|e| match e {
        SecretError::BadKey(why) => SecretError::BadKey(format!("in {} {why}", path.display())),
        other => other,
    })
}

/// The service's keys: from the configuration, else from the key file, else a new key. A
/// rotation cut short (its new key file still present) leaves both keys readable.
pub fn load(config: &SecretsConfig, data_dir: &Path) -> Result<(Keys, Origin), SecretError> {
    let mut keys = if !config.key.trim().is_empty() {
        (Keys::parse(&config.key)?, Origin::Config)
    } else {
        let path = key_file(config, data_dir);
        if path.exists() {
            (read_key(&path)?, Origin::File(path))
        } else {
            (Keys::generate(), Origin::New(path))
        }
    };
    if !config.old_key.trim().is_empty() {
        keys.0 = keys.0.reading(Keys::parse(&config.old_key)?);
    }
    if let Origin::File(path) = &keys.1 {
        let pending = pending_file(path);
        if pending.exists() {
            keys.0 = keys.0.reading(read_key(&pending)?);
        }
    }
    Ok(keys)
}

/// Writes a key file readable by its owner only; refuses to replace one.
pub fn write_key_file(path: &Path, keys: &Keys) -> Result<(), SecretError> {
    let io = |source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    let mut text = keys.encoded();
    text.push('\n');
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Makes a directory and what it holds readable by its owner only (0700 and 0600).
pub fn restrict(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                restrict(&entry.path())?;
            } else {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_context() {
        let keys = Keys::generate();
        let sealed = keys.seal("connection/1/2/credentials", b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        let opened = keys
            .open("connection/1/2/credentials", &sealed)
            .expect("opens");
        assert_eq!(opened.as_slice(), b"hunter2");
        // Bound to its record: moved onto another connection it does not open.
        assert!(matches!(
            keys.open("connection/1/3/credentials", &sealed),
            Err(SecretError::Tampered)
        ));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            keys.open("connection/1/2/credentials", &flipped),
            Err(SecretError::Tampered)
        ));
        assert!(matches!(
            Keys::generate().open("connection/1/2/credentials", &sealed),
            Err(SecretError::UnknownKey(_))
        ));
        // Two seals of one value differ (random nonces).
        assert_ne!(keys.seal("c", b"x"), keys.seal("c", b"x"));
    }

    #[test]
    fn a_new_key_reads_what_the_old_one_sealed_during_a_rotation() {
        let old = Keys::generate();
        let sealed = old.seal("w", b"s");
        let old_text = old.encoded();
        let new = Keys::generate().reading(Keys::parse(&old_text).expect("parses"));
        assert_eq!(new.open("w", &sealed).expect("opens").as_slice(), b"s");
        assert!(!new.is_current(&sealed));
        assert!(new.is_current(&new.seal("w", b"s")));
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(matches!(
            Keys::parse("not base64!"),
            Err(SecretError::BadKey(_))
        ));
        assert!(matches!(Keys::parse("AAAA"), Err(SecretError::BadKey(_))));
        let k = Keys::generate();
        assert_eq!(Keys::parse(&k.encoded()).expect("parses").id(), k.id());
    }

    #[test]
    fn the_key_file_sits_beside_the_data_directory_and_is_private() {
        let dir = tempfile::tempdir().expect("a dir");
        let config = SecretsConfig::default();
        let path = key_file(&config, &dir.path().join("data"));
        assert_eq!(path, dir.path().join("data.key"));
        let (keys, origin) = load(&config, &dir.path().join("data")).expect("a new key");
        assert_eq!(origin, Origin::New(path.clone()));
        write_key_file(&path, &keys).expect("written");
        assert!(write_key_file(&path, &keys).is_err(), "never replaced");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, origin) = load(&config, &dir.path().join("data")).expect("read back");
        assert_eq!((again.id(), origin), (keys.id(), Origin::File(path)));
    }
}
