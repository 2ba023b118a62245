//! Secrets sealed at rest: the master key that encrypts the secrets a store holds (API secrets, the server's
//! CURVE secret keys), and the sealing itself, with XChaCha20-Poly1305.
//!
//! Independent of any database: a store keeps what [`MasterKey::seal`] returns in place of a secret and gives it
//! back to [`MasterKey::open`] with the same [`SecretSlot`]. The master key never enters the store; only its
//! [`MasterKey::fingerprint`] does, so a wrong key is named as such rather than failing row by row.
//!
//! The key file holds the 32 bytes of the key as 64 hexadecimal digits on one line (a final newline is allowed,
//! nothing else), mode 0600: `zavro store seal --create-key` writes one.

use std::{
    fmt,
    fs::{self, OpenOptions},
    io::{Read, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Bytes of a master key.
pub const KEY_LEN: usize = 32;

/// Bytes of the random nonce that starts every sealed value.
pub const NONCE_LEN: usize = 24;

/// Bytes of the Poly1305 tag that ends every sealed value.
pub const TAG_LEN: usize = 16;

/// Hexadecimal digits of a fingerprint (the first 8 bytes of a SHA-256).
pub const FINGERPRINT_LEN: usize = 16;

/// What starts the associated data of every sealed value; a later format would change the version.
const AD_PREFIX: &[u8] = b"zavro sealed v1\0";

/// What is hashed before the key for its fingerprint, so the fingerprint is of no use as anything else.
const FINGERPRINT_LABEL: &[u8] = b"zavro master key fingerprint v1\0";

/// The longest key file read: a key is 64 digits and a newline; anything much longer is not a key file.
const MAX_FILE_LEN: usize = 4096;

/// The place in the store a sealed secret belongs to (an API key's row, a server key pair's row), bound into its
/// associated data: a value moved to another slot (or from an API secret to a server key) does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSlot<'a> {
    /// The secret of the API key with this id.
    ApiKey(&'a str),
    /// The secret half of the server key pair whose public key is this (Z85).
    ServerKey(&'a str),
}

impl SecretSlot<'_> {
    /// `"zavro sealed v1\0api-key\0" + id`, or `"zavro sealed v1\0server-key\0" + public key`.
    pub fn associated_data(&self) -> Vec<u8> {
        let (kind, name) = match self {
            SecretSlot::ApiKey(id) => (&b"api-key"[..], *id),
            SecretSlot::ServerKey(public) => (&b"server-key"[..], *public),
        };
        [AD_PREFIX, kind, b"\0", name.as_bytes()].concat()
    }
}

impl fmt::Display for SecretSlot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSlot::ApiKey(id) => write!(f, "the secret of key {id}"),
            SecretSlot::ServerKey(public) => write!(f, "the secret of server key {public}"),
        }
    }
}

/// Reads `file` into `buffer` until end of file or until `buffer` is full; returns the bytes read. The buffer is
/// never grown, so the bytes read are in it alone.
fn read_up_to(file: &mut fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut len = 0;
    while len < buffer.len() {
        match file.read(&mut buffer[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}

/// fsync(2)s the directory holding `path`, so that a file just created there is still named after a crash.
fn sync_directory_of(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

/// Why a master key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    /// The file could not be opened, read or written.
    #[error("master key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Other users may read or write the file.
    #[error(
        "master key file {path} is readable or writable by other users (mode {mode:o}); it decrypts every secret of \
         the store: chmod 600 {path}"
    )]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path names something other than a regular file.
    #[error("master key file {0} is not a regular file")]
    NotAFile(PathBuf),
    /// The file does not hold a key in the documented format.
    #[error(
        "master key file {path} {problem}; it must hold 64 hexadecimal digits (32 bytes) on one line, as `zavro \
         store seal --create-key` writes"
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it (never its content).
        problem: String,
    },
    /// [`MasterKey::generate_to`] found a file already there; it never overwrites one.
    #[error(
        "master key file {0} already exists; it is never overwritten (give another path, or use that key)"
    )]
    Exists(PathBuf),
    /// The OS random number generator failed.
    #[error("no randomness from the operating system for a master key: {0}")]
    Random(getrandom::Error),
}

/// Why a value could not be sealed or opened. Never carries the value.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The value is not one sealed under this key for this row: edited, moved from another row, or sealed
    /// under another master key.
    #[error(
        "{row} does not open under the master key: the stored value was altered, moved from another row, or sealed under another key"
    )]
    DoesNotOpen {
        /// The row, as text (a key id or public key: no secret).
        row: String,
    },
    /// The stored value is shorter than a nonce and a tag.
    #[error("{row} is not a sealed value: {len} bytes, fewer than the {min} of an empty one")]
    TooShort {
        /// The row, as text.
        row: String,
        /// Its length.
        len: usize,
        /// The shortest sealed value.
        min: usize,
    },
    /// An opened value should be text (an API secret, a Z85 key) and is not UTF-8.
    #[error("{row} opened, but is not text")]
    NotText {
        /// The row, as text.
        row: String,
    },
    /// The OS random number generator failed, so no nonce could be made.
    #[error("no randomness from the operating system for a nonce: {0}")]
    Random(getrandom::Error),
    /// The cipher refused the input (a value far beyond any secret's size).
    #[error("{row} cannot be sealed: too long")]
    TooLong {
        /// The row, as text.
        row: String,
    },
}

/// The key that seals a store's secrets: 32 bytes, wiped from memory when dropped, never printed (its `Debug`
/// shows the fingerprint only).
pub struct MasterKey {
    /// On the heap, so moving the key moves a pointer and leaves no copy of the bytes behind.
    bytes: Box<Zeroizing<[u8; KEY_LEN]>>,
    /// The file it was read from or written to, for messages; `None` for a key made in memory.
    source: Option<PathBuf>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("fingerprint", &self.fingerprint())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// A key from its bytes (tests, and backends that get the key some other way).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        MasterKey {
            bytes: Box::new(Zeroizing::new(bytes)),
            source: None,
        }
    }

    /// A new random key, in memory only.
    pub fn generate() -> Result<MasterKey, MasterKeyError> {
        let mut bytes = Box::new(Zeroizing::new([0u8; KEY_LEN]));
        getrandom::fill(bytes.as_mut_slice()).map_err(MasterKeyError::Random)?;
        Ok(MasterKey {
            bytes,
            source: None,
        })
    }

    /// Reads the key file at `path`, refusing one that other users may read or write (as the store is refused).
    pub fn load(path: &Path) -> Result<MasterKey, MasterKeyError> {
        Self::load_checking(path, 0o077)
    }

    /// Reads a systemd credential (`LoadCredential=`, in `$CREDENTIALS_DIRECTORY`), refusing one that others
    /// may read or write. Its group bits are not checked: systemd grants the service's user read access with an
    /// ACL, whose mask shows in the group bits, on a directory private to the unit.
    pub fn load_credential(path: &Path) -> Result<MasterKey, MasterKeyError> {
        Self::load_checking(path, 0o007)
    }

    fn load_checking(path: &Path, forbidden_mode: u32) -> Result<MasterKey, MasterKeyError> {
        let io = |source| MasterKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let malformed = |problem: &str| MasterKeyError::Malformed {
            path: path.to_owned(),
            problem: problem.to_owned(),
        };
        let mut file = fs::File::open(path).map_err(io)?;
        // Checked on the open file, so what is checked is what is read.
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(MasterKeyError::NotAFile(path.to_owned()));
        }
        let mode = meta.mode() & 0o777;
        if mode & forbidden_mode != 0 {
            return Err(MasterKeyError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let mut buffer = Zeroizing::new(vec![0u8; MAX_FILE_LEN + 1]);
        let len = read_up_to(&mut file, &mut buffer).map_err(io)?;
        if len > MAX_FILE_LEN {
            return Err(malformed("is far longer than a key"));
        }
        let text = &buffer[..len];
        let line = match text.strip_suffix(b"\n") {
            Some(line) => line.strip_suffix(b"\r").unwrap_or(line),
            None => text,
        };
        if line.contains(&b'\n') {
            return Err(malformed("has more than one line"));
        }
        if line.len() != KEY_LEN * 2 {
            return Err(malformed(&format!(
                "holds {} characters, not 64",
                line.len()
            )));
        }
        let mut bytes = Box::new(Zeroizing::new([0u8; KEY_LEN]));
        hex::decode_to_slice(line, bytes.as_mut_slice())
            .map_err(|_| malformed("is not hexadecimal"))?;
        Ok(MasterKey {
            bytes,
            source: Some(path.to_owned()),
        })
    }

    /// Makes a new random key and writes it to a new file at `path`, mode 0600, never replacing a file that is
    /// there (the file is created with `O_EXCL`). The directory must exist.
    pub fn generate_to(path: &Path) -> Result<MasterKey, MasterKeyError> {
        let io = |source| MasterKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let key = Self::generate()?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => MasterKeyError::Exists(path.to_owned()),
                _ => io(source),
            })?;
        // Digits and newline in one buffer of its final size: nothing is reallocated, so no copy of the key is
        // left behind in freed memory.
        let mut line = Zeroizing::new([0u8; KEY_LEN * 2 + 1]);
        hex::encode_to_slice(key.bytes.as_slice(), &mut line[..KEY_LEN * 2])
            .expect("the buffer holds two digits per byte");
        line[KEY_LEN * 2] = b'\n';
        let written = file
            .write_all(line.as_slice())
            .and_then(|()| file.sync_all())
            // The new name must survive a crash as the content does: sync the directory entry too.
            .and_then(|()| sync_directory_of(path));
        if let Err(source) = written {
            // A half-written file would later read as a malformed key: better none at all.
            let _ = fs::remove_file(path);
            return Err(io(source));
        }
        Ok(MasterKey {
            source: Some(path.to_owned()),
            ..key
        })
    }

    /// The file the key came from, if it came from one.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Where the key came from, for messages: its file, or "the key given".
    pub fn describe_source(&self) -> String {
        match &self.source {
            Some(path) => path.display().to_string(),
            None => "the key given".to_owned(),
        }
    }

    /// A public name for the key: the first 16 hexadecimal digits of SHA-256 over a label and the key. Stored
    /// with the secrets it sealed, so that a wrong key is told apart from damaged rows; it reveals nothing of
    /// the key.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::new()
            .chain_update(FINGERPRINT_LABEL)
            .chain_update(self.bytes.as_slice())
            .finalize();
        hex::encode(&digest[..FINGERPRINT_LEN / 2])
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        // From the slice: no temporary copy of the key is left on the stack.
        XChaCha20Poly1305::new_from_slice(self.bytes.as_slice()).expect("a master key is 32 bytes")
    }

    /// Seals `plaintext` for `slot`: a random 24-byte nonce followed by the ciphertext and its 16-byte tag.
    pub fn seal(&self, slot: SecretSlot<'_>, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(SealError::Random)?;
        let aad = slot.associated_data();
        let ciphertext = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::TooLong {
                row: slot.to_string(),
            })?;
        Ok([&nonce[..], &ciphertext].concat())
    }

    /// Opens what [`MasterKey::seal`] made for the same `slot`; fails for anything else.
    pub fn open(
        &self,
        slot: SecretSlot<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let min = NONCE_LEN + TAG_LEN;
        if sealed.len() < min {
            return Err(SealError::TooShort {
                row: slot.to_string(),
                len: sealed.len(),
                min,
            });
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce's length");
        let aad = slot.associated_data();
        self.cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::DoesNotOpen {
                row: slot.to_string(),
            })
    }

    /// Seals a text secret (an API secret, a Z85 key) for `slot`.
    pub fn seal_text(&self, slot: SecretSlot<'_>, secret: &str) -> Result<Vec<u8>, SealError> {
        self.seal(slot, secret.as_bytes())
    }

    /// Opens a text secret sealed with [`MasterKey::seal_text`] for `slot`.
    pub fn open_text(
        &self,
        slot: SecretSlot<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<String>, SealError> {
        let mut bytes = self.open(slot, sealed)?;
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(Zeroizing::new(
                String::from_utf8(std::mem::take(&mut *bytes)).expect("checked as UTF-8"),
            )),
            Err(_) => Err(SealError::NotText {
                row: slot.to_string(),
            }),
        }
    }
}

/// A test allocator that, while armed on a thread, looks in every block that thread frees for 32 hexadecimal
/// digits in a row: a key, or its file's text, left behind in freed memory where a later allocation could read
/// it. Every block is handed out zeroed, so what is looked at was written by its user; `realloc` is the trait's
/// own (allocate, copy, free), so a block given up by growing a buffer is looked at too.
#[cfg(test)]
mod freed_memory {
    use std::{
        alloc::{GlobalAlloc, Layout, System},
        cell::Cell,
    };

    thread_local! {
        static ARMED: Cell<bool> = const { Cell::new(false) };
        static FOUND: Cell<bool> = const { Cell::new(false) };
    }

    struct Watch;

    #[global_allocator]
    static WATCH: Watch = Watch;

    // SAFETY: every call is passed on to the system allocator with the caller's arguments; dealloc only reads
    // the block it is about to free, which alloc zeroed, before freeing it.
    unsafe impl GlobalAlloc for Watch {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if ARMED.try_with(Cell::get).unwrap_or(false) {
                let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
                if has_digits_of_a_key(block) {
                    let _ = FOUND.try_with(|found| found.set(true));
                }
            }
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// 32 hexadecimal digits in a row (half a key file's line).
    fn has_digits_of_a_key(block: &[u8]) -> bool {
        let mut run = 0;
        for byte in block {
            run = if byte.is_ascii_hexdigit() { run + 1 } else { 0 };
            if run >= 32 {
                return true;
            }
        }
        false
    }

    /// Runs `f` with the watch armed on this thread; also returns whether a freed block held a key's digits.
    pub fn watch<T>(f: impl FnOnce() -> T) -> (T, bool) {
        FOUND.with(|found| found.set(false));
        ARMED.with(|armed| armed.set(true));
        let result = f();
        ARMED.with(|armed| armed.set(false));
        (result, FOUND.with(Cell::get))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writing_or_reading_a_key_file_leaves_no_copy_of_the_key_in_freed_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (fingerprint, found) =
            freed_memory::watch(|| MasterKey::generate_to(&path).unwrap().fingerprint());
        assert!(!found, "generate_to freed a block holding the key's digits");
        let (loaded, found) = freed_memory::watch(|| MasterKey::load(&path).unwrap().fingerprint());
        assert!(!found, "load freed a block holding the key's digits");
        assert_eq!(loaded, fingerprint);
        // The control: the file's text read into a String and dropped is seen.
        let (_, found) = freed_memory::watch(|| drop(fs::read_to_string(&path).unwrap()));
        assert!(found, "the watch sees a key's digits in a freed block");
    }

    #[test]
    fn a_sealed_value_opens_for_its_row_only() {
        let key = MasterKey::generate().unwrap();
        let sealed = key
            .seal_text(SecretSlot::ApiKey("ZKA"), "s3cret-value")
            .unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + "s3cret-value".len() + TAG_LEN);
        assert!(
            !sealed
                .windows("s3cret".len())
                .any(|window| window == b"s3cret"),
            "the plaintext is not in the sealed value"
        );
        assert_eq!(
            key.open_text(SecretSlot::ApiKey("ZKA"), &sealed)
                .unwrap()
                .as_str(),
            "s3cret-value"
        );
        for other in [
            SecretSlot::ApiKey("ZKB"),
            SecretSlot::ApiKey("ZKA "),
            SecretSlot::ServerKey("ZKA"),
        ] {
            let err = key.open_text(other, &sealed).unwrap_err();
            assert!(
                matches!(err, SealError::DoesNotOpen { .. }),
                "{other:?}: {err}"
            );
        }
        let again = key
            .seal_text(SecretSlot::ApiKey("ZKA"), "s3cret-value")
            .unwrap();
        assert_ne!(again, sealed, "every value gets its own nonce");
    }

    #[test]
    fn a_tampered_byte_or_a_cut_value_does_not_open() {
        let key = MasterKey::generate().unwrap();
        let row = SecretSlot::ServerKey("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
        let sealed = key.seal(row, b"server secret").unwrap();
        for index in [0, NONCE_LEN, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[index] ^= 1;
            assert!(
                matches!(key.open(row, &tampered), Err(SealError::DoesNotOpen { .. })),
                "byte {index}"
            );
        }
        assert!(matches!(
            key.open(row, &sealed[..sealed.len() - 1]),
            Err(SealError::DoesNotOpen { .. })
        ));
        assert!(matches!(
            key.open(row, &sealed[..NONCE_LEN + TAG_LEN - 1]),
            Err(SealError::TooShort { .. })
        ));
    }

    #[test]
    fn another_key_does_not_open_and_has_another_fingerprint() {
        let key = MasterKey::generate().unwrap();
        let other = MasterKey::generate().unwrap();
        let sealed = key.seal(SecretSlot::ApiKey("ZKA"), b"secret").unwrap();
        assert!(matches!(
            other.open(SecretSlot::ApiKey("ZKA"), &sealed),
            Err(SealError::DoesNotOpen { .. })
        ));
        assert_eq!(key.fingerprint().len(), FINGERPRINT_LEN);
        assert_ne!(key.fingerprint(), other.fingerprint());
        assert_eq!(
            key.fingerprint(),
            MasterKey::from_bytes(**key.bytes).fingerprint()
        );
    }

    #[test]
    fn the_fingerprint_is_sha256_of_the_label_and_key() {
        // An independent computation, so the documented definition stays what the code does.
        let key = MasterKey::from_bytes([7u8; KEY_LEN]);
        let mut input = b"zavro master key fingerprint v1\0".to_vec();
        input.extend_from_slice(&[7u8; KEY_LEN]);
        let digest = hex::encode(Sha256::digest(&input));
        assert_eq!(key.fingerprint(), digest[..16]);
    }

    #[test]
    fn debug_shows_the_fingerprint_never_the_key() {
        let key = MasterKey::from_bytes([0xab; KEY_LEN]);
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.fingerprint()), "{shown}");
        assert!(!shown.contains("abab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
    }

    #[test]
    fn associated_data_is_as_documented() {
        assert_eq!(
            SecretSlot::ApiKey("ZK1").associated_data(),
            b"zavro sealed v1\0api-key\0ZK1"
        );
        assert_eq!(
            SecretSlot::ServerKey("pub").associated_data(),
            b"zavro sealed v1\0server-key\0pub"
        );
    }

    #[test]
    fn a_generated_key_file_is_private_reloads_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = MasterKey::generate_to(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65, "64 hex digits and a newline");
        let loaded = MasterKey::load(&path).unwrap();
        assert_eq!(loaded.fingerprint(), key.fingerprint());
        assert_eq!(loaded.source(), Some(path.as_path()));

        let err = MasterKey::generate_to(&path).unwrap_err();
        assert!(matches!(err, MasterKeyError::Exists(_)), "{err}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            text,
            "the existing file is untouched"
        );
        let err = MasterKey::generate_to(&dir.path().join("no/such/dir")).unwrap_err();
        assert!(matches!(err, MasterKeyError::Io { .. }), "{err}");
    }

    #[test]
    fn a_key_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::generate_to(&path).unwrap();
        for mode in [0o640, 0o604, 0o620, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = MasterKey::load(&path).unwrap_err();
            assert!(
                matches!(err, MasterKeyError::TooOpen { mode: m, .. } if m == mode),
                "{mode:o}: {err}"
            );
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        MasterKey::load(&path).unwrap();
        // A systemd credential's group bits show the ACL systemd grants the service user; others still count.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o440)).unwrap();
        MasterKey::load_credential(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
        assert!(matches!(
            MasterKey::load_credential(&path),
            Err(MasterKeyError::TooOpen { .. })
        ));
    }

    #[test]
    fn a_key_file_of_the_wrong_shape_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let write = |content: &[u8]| {
            let _ = fs::remove_file(&path);
            fs::write(&path, content).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        };
        let hex64 = "0123456789abcdef".repeat(4);
        for (content, problem) in [
            (hex64[..62].to_owned(), "62 characters"),
            (format!("{hex64}00"), "66 characters"),
            (String::new(), "0 characters"),
            (format!("{}zz", &hex64[..62]), "not hexadecimal"),
            (format!("{hex64}\n{hex64}\n"), "more than one line"),
        ] {
            write(content.as_bytes());
            let err = MasterKey::load(&path).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, MasterKeyError::Malformed { .. }) && message.contains(problem),
                "{content:?}: {message}"
            );
            assert!(!message.contains("0123456789abcdef"), "{message}");
        }
        write(format!("{hex64}\r\n").as_bytes());
        MasterKey::load(&path).unwrap();
        write(hex64.to_uppercase().as_bytes());
        MasterKey::load(&path).unwrap();
        write(&vec![b'a'; 10_000]);
        assert!(matches!(
            MasterKey::load(&path),
            Err(MasterKeyError::Malformed { .. })
        ));
        assert!(matches!(
            MasterKey::load(dir.path()),
            Err(MasterKeyError::NotAFile(_) | MasterKeyError::Io { .. })
        ));
        assert!(matches!(
            MasterKey::load(&dir.path().join("absent")),
            Err(MasterKeyError::Io { .. })
        ));
    }
}
