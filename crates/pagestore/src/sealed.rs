//! Encryption at rest: a backend wrapper that seals every object before it
//! leaves the device and opens it when it comes back.
//!
//! [`SealedStore`] encrypts and authenticates each object with
//! XChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the user's
//! [`SealKey`]. The plaintext is cut into fixed-size chunks, each sealed on its
//! own, so that a ranged `get` (a page fault reads one record, or at most 256 KiB
//! ahead, at an offset of a 1 MiB segment) fetches and opens only the chunks it
//! covers. The store underneath sees only ciphertext; object *names* stay in
//! the clear (they carry process names, epochs and sequence numbers, no program
//! data), and so do object sizes (to within a chunk's tag per chunk).
//!
//! The associated data of every chunk binds it to the object's header, its own
//! index, whether it is the last chunk, and the object's key (its name, which
//! carries the epoch). So truncation, reordering or swapping chunks, swapping
//! objects, and replaying an object under another name all fail authentication,
//! reported as [`StorageError::Damaged`] naming the object. The layout is in
//! `docs/format.md`, *Sealed objects*.
//!
//! A sealed store holds a key-check object, `sealed/keycheck`, written when the
//! store is first sealed and opened by [`SealedStore::open`]: a wrong key is one
//! clear error at open, not a damaged page later. Keys under `sealed/` are the
//! wrapper's own: it refuses them to its callers and hides them from `list`, so
//! [`refuse_sealed`] tells a sealed store opened without its key.

use crate::backend::{StorageBackend, StorageError};
use chacha20poly1305::{
    aead::{AeadInPlace, KeyInit},
    Tag, XChaCha20Poly1305, XNonce,
};
use std::{
    collections::BTreeMap,
    fmt,
    ops::Range,
    path::Path,
    sync::{Arc, Mutex},
};
use zeroize::Zeroize;

/// Magic of a sealed object.
pub const SEALED_MAGIC: [u8; 4] = *b"FSEL";
/// Layout version of sealed objects.
pub const SEALED_VERSION: u32 = 1;
/// Bytes of the header before the first chunk.
pub const SEALED_HEADER_BYTES: usize = 40;
/// Bytes the AEAD adds to each chunk (the Poly1305 tag).
pub const SEALED_TAG_BYTES: usize = 16;
/// Default plaintext bytes per chunk. A page fault reads one 4 KiB record
/// (4,120 bytes with its header), which then spans two chunks: 8 KiB opened
/// per fault, against 16 to 32 KiB with 16 KiB chunks (`examples/sealed_cost.rs`
/// measures both). The tags cost 0.4% of the stored bytes.
pub const SEALED_CHUNK_BYTES: u32 = 4 << 10;
/// Least and most plaintext bytes per chunk a writer may choose and a reader
/// accepts.
pub const SEALED_CHUNK_BYTES_MIN: u32 = 1 << 10;
/// See [`SEALED_CHUNK_BYTES_MIN`].
pub const SEALED_CHUNK_BYTES_MAX: u32 = 1 << 20;
/// The key-check object of a sealed store.
pub const KEYCHECK_KEY: &str = "sealed/keycheck";
/// Keys reserved to the wrapper.
const RESERVED_PREFIX: &str = "sealed/";
/// Where the format's objects live: a store with any of them is in use.
const FORMAT_PREFIXES: [&str; 2] = ["modules/", "procs/"];
/// What the key-check object holds.
const KEYCHECK_PLAINTEXT: &[u8] = b"ferrite sealed store key check, version 1";
/// Headers of recently read objects kept, so a ranged read costs one fetch.
const HEADERS_CACHED_MAX: usize = 256;
/// HKDF inputs: a fixed salt (the user's key is already uniform: HKDF here
/// separates uses, it does not stretch a password) and the use.
const KDF_SALT: &[u8] = b"ferrite sealed store v1";
const KDF_INFO: &[u8] = b"ferrite/sealed/xchacha20poly1305/chunk";

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin} must hold 32 raw bytes or 64 hex characters (it holds {bytes} bytes)")]
    Format { origin: String, bytes: usize },
    #[error("environment variable {0} is not set or not valid UTF-8")]
    NotSet(String),
}

/// The user's 32-byte key. Never used directly: [`SealedStore`] derives its
/// cipher key from it. Zeroed on drop; its `Debug` shows nothing.
#[derive(Clone)]
pub struct SealKey {
    bytes: [u8; 32],
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl Drop for SealKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl SealKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self { bytes }
    }

    /// Reads a key file: exactly 32 raw bytes, or 64 hex characters
    /// (surrounding whitespace, such as a final newline, is ignored).
    ///
    /// # Errors
    /// [`KeyError::Io`] if the file cannot be read, [`KeyError::Format`] if it
    /// holds anything else.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        // A key file is tiny: read at most what a hex key with whitespace takes.
        let mut contents = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(
                std::fs::File::open(path).map_err(|source| KeyError::Io {
                    path: path.display().to_string(),
                    source,
                })?,
                4096,
            ),
            &mut contents,
        )
        .map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let key = Self::parse(&contents, || format!("key file {}", path.display()));
        contents.zeroize();
        key
    }

    /// Reads a key from environment variable `var`: 64 hex characters.
    ///
    /// # Errors
    /// [`KeyError::NotSet`] or [`KeyError::Format`].
    pub fn from_env(var: &str) -> Result<Self, KeyError> {
        let mut value = std::env::var(var).map_err(|_| KeyError::NotSet(var.to_string()))?;
        let key = match Self::parse_hex(value.trim().as_bytes()) {
            Some(key) => Ok(key),
            None => Err(KeyError::Format {
                origin: format!("environment variable {var}"),
                bytes: value.len(),
            }),
        };
        value.zeroize();
        key
    }

    fn parse(contents: &[u8], origin: impl FnOnce() -> String) -> Result<Self, KeyError> {
        if let Ok(bytes) = <[u8; 32]>::try_from(contents) {
            return Ok(Self::from_bytes(bytes));
        }
        Self::parse_hex(contents.trim_ascii()).ok_or_else(|| KeyError::Format {
            origin: origin(),
            bytes: contents.len(),
        })
    }

    fn parse_hex(hex: &[u8]) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(Self::from_bytes(bytes))
    }

    /// The AEAD key: HKDF-SHA256 of the user's key.
    fn cipher(&self) -> XChaCha20Poly1305 {
        let kdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(KDF_SALT), &self.bytes);
        let mut key = [0; 32];
        kdf.expand(KDF_INFO, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let cipher = XChaCha20Poly1305::new(&key.into());
        key.zeroize();
        cipher
    }
}

/// The header of a sealed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    chunk_bytes: u32,
    plain_len: u64,
    nonce_prefix: [u8; 16],
}

impl Header {
    fn encode(&self) -> [u8; SEALED_HEADER_BYTES] {
        let mut out = [0; SEALED_HEADER_BYTES];
        out[0..4].copy_from_slice(&SEALED_MAGIC);
        out[4..8].copy_from_slice(&SEALED_VERSION.to_le_bytes());
        out[8..12].copy_from_slice(&self.chunk_bytes.to_le_bytes());
        // 12..16 reserved (0).
        out[16..24].copy_from_slice(&self.plain_len.to_le_bytes());
        out[24..40].copy_from_slice(&self.nonce_prefix);
        out
    }

    /// Decodes and checks a header; the reason it is refused otherwise.
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let Some(bytes) = bytes.get(..SEALED_HEADER_BYTES) else {
            return Err(format!(
                "shorter than a sealed header ({} bytes)",
                bytes.len()
            ));
        };
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        if bytes[0..4] != SEALED_MAGIC {
            return Err("not a sealed object (bad magic)".to_string());
        }
        if u32_at(4) != SEALED_VERSION {
            return Err(format!("unsupported sealed layout version {}", u32_at(4)));
        }
        let chunk_bytes = u32_at(8);
        if !(SEALED_CHUNK_BYTES_MIN..=SEALED_CHUNK_BYTES_MAX).contains(&chunk_bytes)
            || !chunk_bytes.is_power_of_two()
            || u32_at(12) != 0
        {
            return Err(format!("bad chunk size {chunk_bytes} or reserved field"));
        }
        let plain_len = u64::from_le_bytes(bytes[16..24].try_into().expect("8"));
        // Sizes past 2^56 cannot be stored; refusing them keeps offsets in range.
        if plain_len >= 1 << 56 {
            return Err(format!("plaintext length {plain_len} out of range"));
        }
        let nonce_prefix = bytes[24..40].try_into().expect("16");
        Ok(Self {
            chunk_bytes,
            plain_len,
            nonce_prefix,
        })
    }

    /// Chunks of the object: at least one (an empty object has one empty chunk,
    /// so that even it carries a tag).
    fn chunks(&self) -> u64 {
        self.plain_len.div_ceil(self.chunk_bytes as u64).max(1)
    }

    /// Offset in the sealed object of chunk `index` (or of its end, for
    /// `index == chunks`).
    fn sealed_offset(&self, index: u64) -> u64 {
        let plain = (index * self.chunk_bytes as u64).min(self.plain_len);
        SEALED_HEADER_BYTES as u64 + plain + index * SEALED_TAG_BYTES as u64
    }

    fn sealed_len(&self) -> u64 {
        self.sealed_offset(self.chunks())
    }

    /// Plaintext range of chunk `index`.
    fn plain_range(&self, index: u64) -> Range<u64> {
        let start = index * self.chunk_bytes as u64;
        start..(start + self.chunk_bytes as u64).min(self.plain_len)
    }

    fn nonce(&self, index: u64) -> XNonce {
        let mut nonce = [0; 24];
        nonce[..16].copy_from_slice(&self.nonce_prefix);
        nonce[16..].copy_from_slice(&index.to_le_bytes());
        nonce.into()
    }

    /// Associated data of chunk `index` of object `key`: the header, the index,
    /// the last-chunk flag, then the key (last, so no length is needed).
    fn associated_data(&self, key: &str, index: u64) -> Vec<u8> {
        let last = index + 1 == self.chunks();
        let mut aad = Vec::with_capacity(SEALED_HEADER_BYTES + 9 + key.len());
        aad.extend_from_slice(&self.encode());
        aad.extend_from_slice(&index.to_le_bytes());
        aad.push(u8::from(last));
        aad.extend_from_slice(key.as_bytes());
        aad
    }
}

/// A backend that encrypts and authenticates every object it stores in `B`.
pub struct SealedStore<B: StorageBackend> {
    inner: B,
    cipher: XChaCha20Poly1305,
    chunk_bytes: u32,
    /// Headers of objects read, by key, with a use stamp; dropped on `put` and
    /// `delete` of the key. A stale header cannot pass for a fresh one: the
    /// header is in every chunk's associated data, and a read that fails with a
    /// cached header is retried once with the stored one.
    headers: Mutex<HeaderCache>,
}

#[derive(Debug, Default)]
struct HeaderCache {
    entries: BTreeMap<String, (Header, u64)>,
    clock: u64,
}

impl HeaderCache {
    fn get(&mut self, key: &str) -> Option<Header> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(header, used)| {
            *used = clock;
            *header
        })
    }

    fn insert(&mut self, key: &str, header: Header) {
        if self.entries.len() >= HEADERS_CACHED_MAX {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.clock += 1;
        self.entries.insert(key.to_string(), (header, self.clock));
    }
}

impl<B: StorageBackend> fmt::Debug for SealedStore<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedStore")
            .field("inner", &self.inner)
            .field("chunk_bytes", &self.chunk_bytes)
            .finish_non_exhaustive()
    }
}

impl<B: StorageBackend> SealedStore<B> {
    /// Opens `inner` as a sealed store with `key`: checks the key against the
    /// store's key-check object, or, in a store that holds no module or
    /// process object yet, writes one (the store is sealed from then on).
    ///
    /// # Errors
    /// [`StorageError::Damaged`] naming `sealed/keycheck` for a wrong key (or a
    /// damaged key check); [`StorageError::NotSealed`] if the store holds
    /// modules or process objects but no key check (it was written without sealing); storage
    /// failures.
    pub fn open(inner: B, key: &SealKey) -> Result<Self, StorageError> {
        let store = Self {
            inner,
            cipher: key.cipher(),
            chunk_bytes: SEALED_CHUNK_BYTES,
            headers: Mutex::new(HeaderCache::default()),
        };
        store.check_key()?;
        Ok(store)
    }

    /// Seals objects written from now on in chunks of `chunk_bytes` of
    /// plaintext (default [`SEALED_CHUNK_BYTES`]); objects already stored keep
    /// theirs. Smaller chunks make small ranged reads cheaper and add a 16-byte
    /// tag per chunk.
    ///
    /// # Panics
    /// If `chunk_bytes` is not a power of two within
    /// [`SEALED_CHUNK_BYTES_MIN`]`..=`[`SEALED_CHUNK_BYTES_MAX`].
    pub fn with_chunk_bytes(mut self, chunk_bytes: u32) -> Self {
        assert!(
            chunk_bytes.is_power_of_two()
                && (SEALED_CHUNK_BYTES_MIN..=SEALED_CHUNK_BYTES_MAX).contains(&chunk_bytes),
            "sealed chunk size {chunk_bytes}"
        );
        self.chunk_bytes = chunk_bytes;
        self
    }

    /// The store underneath (it holds ciphertext only).
    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn check_key(&self) -> Result<(), StorageError> {
        match self.get_sealed(KEYCHECK_KEY, None) {
            Ok(bytes) if bytes == KEYCHECK_PLAINTEXT => return Ok(()),
            Ok(_) => return Err(damaged(KEYCHECK_KEY, "the key check holds other bytes")),
            Err(StorageError::Damaged { key, .. }) => {
                return Err(damaged(
                    &key,
                    "the store's key check does not open with this key",
                ))
            }
            Err(StorageError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
        // Objects of the format, not the local files beside them (run locks
        // and file journals live under a local store's root too).
        for prefix in FORMAT_PREFIXES {
            if !self.inner.list(prefix)?.is_empty() {
                return Err(StorageError::NotSealed);
            }
        }
        let sealed = self.seal(KEYCHECK_KEY, KEYCHECK_PLAINTEXT)?;
        match self.inner.put_new(KEYCHECK_KEY, &sealed) {
            // Another opener sealed the store first: check against its key check.
            Err(StorageError::AlreadyExists { .. }) => self.check_key_written(),
            other => other,
        }
    }

    fn check_key_written(&self) -> Result<(), StorageError> {
        match self.get_sealed(KEYCHECK_KEY, None) {
            Ok(bytes) if bytes == KEYCHECK_PLAINTEXT => Ok(()),
            Ok(_) | Err(StorageError::Damaged { .. }) => Err(damaged(
                KEYCHECK_KEY,
                "the store's key check does not open with this key",
            )),
            Err(error) => Err(error),
        }
    }

    fn headers(&self) -> std::sync::MutexGuard<'_, HeaderCache> {
        self.headers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seals `plain` as object `key`.
    fn seal(&self, key: &str, plain: &[u8]) -> Result<Vec<u8>, StorageError> {
        let mut nonce_prefix = [0; 16];
        getrandom::getrandom(&mut nonce_prefix).map_err(|error| {
            StorageError::io(
                key,
                std::io::Error::other(format!("no random nonce: {error}")),
            )
        })?;
        let header = Header {
            chunk_bytes: self.chunk_bytes,
            plain_len: plain.len() as u64,
            nonce_prefix,
        };
        let mut out = Vec::with_capacity(header.sealed_len() as usize);
        out.extend_from_slice(&header.encode());
        for index in 0..header.chunks() {
            let range = header.plain_range(index);
            let start = out.len();
            out.extend_from_slice(&plain[range.start as usize..range.end as usize]);
            let tag = self
                .cipher
                .encrypt_in_place_detached(
                    &header.nonce(index),
                    &header.associated_data(key, index),
                    &mut out[start..],
                )
                .expect("a chunk is far below the cipher's message limit");
            out.extend_from_slice(&tag);
        }
        debug_assert_eq!(out.len() as u64, header.sealed_len());
        Ok(out)
    }

    /// Opens chunks `first..=last` of object `key`, sealed bytes `sealed`
    /// (starting at chunk `first`), in place; returns the plaintext.
    fn open_chunks(
        &self,
        key: &str,
        header: &Header,
        chunks: Range<u64>,
        mut sealed: Vec<u8>,
    ) -> Result<Vec<u8>, StorageError> {
        let base = header.sealed_offset(chunks.start);
        let expected = header.sealed_offset(chunks.end) - base;
        if sealed.len() as u64 != expected {
            return Err(damaged(
                key,
                &format!(
                    "truncated: {} sealed bytes where chunks {}..{} take {expected}",
                    sealed.len(),
                    chunks.start,
                    chunks.end
                ),
            ));
        }
        let mut plain_end = 0;
        for index in chunks.clone() {
            let at = (header.sealed_offset(index) - base) as usize;
            let len = (header.plain_range(index).end - header.plain_range(index).start) as usize;
            let (data, rest) = sealed[at..].split_at_mut(len);
            let tag = Tag::clone_from_slice(&rest[..SEALED_TAG_BYTES]);
            self.cipher
                .decrypt_in_place_detached(
                    &header.nonce(index),
                    &header.associated_data(key, index),
                    data,
                    &tag,
                )
                .map_err(|_| {
                    damaged(
                        key,
                        &format!("chunk {index} of {} fails authentication", header.chunks()),
                    )
                })?;
            // Compact the plaintext to the front, over the tags already used.
            sealed.copy_within(at..at + len, plain_end);
            plain_end += len;
        }
        sealed.truncate(plain_end);
        Ok(sealed)
    }

    /// The header of object `key`, cached or read.
    fn header(&self, key: &str, fresh: bool) -> Result<Header, StorageError> {
        if !fresh {
            if let Some(header) = self.headers().get(key) {
                return Ok(header);
            }
        }
        let bytes = self.inner.get(key, Some(0..SEALED_HEADER_BYTES as u64))?;
        let header = Header::decode(&bytes).map_err(|reason| damaged(key, &reason))?;
        self.headers().insert(key, header);
        Ok(header)
    }

    /// Reads `range` of the plaintext of object `key` (as the trait's `get`).
    fn get_sealed(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        let Some(range) = range else {
            let sealed = self.inner.get(key, None)?;
            let header = Header::decode(&sealed).map_err(|reason| damaged(key, &reason))?;
            let body = sealed[SEALED_HEADER_BYTES..].to_vec();
            return self.open_chunks(key, &header, 0..header.chunks(), body);
        };
        match self.get_range(key, &range, false) {
            // The cached header may be of an object since replaced elsewhere.
            Err(StorageError::Damaged { .. }) => self.get_range(key, &range, true),
            other => other,
        }
    }

    fn get_range(
        &self,
        key: &str,
        range: &Range<u64>,
        fresh: bool,
    ) -> Result<Vec<u8>, StorageError> {
        let header = self.header(key, fresh)?;
        let start = range.start.min(header.plain_len);
        let end = range.end.min(header.plain_len).max(start);
        let chunk = header.chunk_bytes as u64;
        let chunks = if start < end {
            start / chunk..(end - 1) / chunk + 1
        } else if range.start < range.end {
            // Nothing left past the end: the last chunk still authenticates the
            // length, so a truncated object is not read as a shorter one.
            header.chunks() - 1..header.chunks()
        } else {
            return Ok(Vec::new());
        };
        let sealed_range = header.sealed_offset(chunks.start)..header.sealed_offset(chunks.end);
        let sealed = self.inner.get(key, Some(sealed_range))?;
        let plain = self.open_chunks(key, &header, chunks.clone(), sealed)?;
        let base = chunks.start * chunk;
        let (from, to) = (
            (start.max(base) - base) as usize,
            (end.max(base) - base) as usize,
        );
        Ok(if start < end {
            plain[from..to].to_vec()
        } else {
            Vec::new()
        })
    }
}

/// Refuses a store that is sealed when it is about to be used without its key
/// (`backend` is not a [`SealedStore`]): its objects would read as damage.
///
/// # Errors
/// [`StorageError::KeyRequired`], or a listing failure.
pub fn refuse_sealed(backend: &dyn StorageBackend) -> Result<(), StorageError> {
    if backend.list(RESERVED_PREFIX)?.is_empty() {
        Ok(())
    } else {
        Err(StorageError::KeyRequired)
    }
}

#[cold]
fn damaged(key: &str, reason: &str) -> StorageError {
    StorageError::Damaged {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

fn reserved(key: &str) -> Result<(), StorageError> {
    if key.starts_with(RESERVED_PREFIX) {
        Err(StorageError::InvalidKey(key.to_string()))
    } else {
        Ok(())
    }
}

impl<B: StorageBackend> StorageBackend for SealedStore<B> {
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        reserved(key)?;
        let sealed = self.seal(key, bytes)?;
        self.headers().entries.remove(key);
        self.inner.put_new(key, &sealed)
    }

    fn put_new_deferred(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        reserved(key)?;
        let sealed = self.seal(key, bytes)?;
        self.headers().entries.remove(key);
        self.inner.put_new_deferred(key, &sealed)
    }

    fn sync(&self, keys: &[String]) -> Result<(), StorageError> {
        self.inner.sync(keys)
    }

    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        reserved(key)?;
        self.get_sealed(key, range)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = self.inner.list(prefix)?;
        keys.retain(|key| !key.starts_with(RESERVED_PREFIX));
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        reserved(key)?;
        self.headers().entries.remove(key);
        self.inner.delete(key)
    }

    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        // What the object takes in the store: its sealed size.
        self.inner.size(key)
    }

    /// Sealing keeps every object's name, so the store underneath sees the
    /// same keys created: the subscription is forwarded as it is, and only
    /// the store's own keys (`sealed/...`) are kept from the caller.
    fn subscribe(&self, prefix: &str, notify: crate::Notify) -> Result<bool, StorageError> {
        let filtered: crate::Notify = Arc::new(move |key: &str| {
            if !key.starts_with(RESERVED_PREFIX) {
                notify(key);
            }
        });
        self.inner.subscribe(prefix, filtered)
    }

    /// Plaintext ranges become the sealed ranges of the chunks that hold
    /// them: exact when the object's header is known, else a range that
    /// surely covers them (whatever the chunk size).
    fn prefetch(&self, ranges: &[(String, Range<u64>)]) {
        let sealed: Vec<(String, Range<u64>)> = ranges
            .iter()
            .filter(|(key, range)| !key.starts_with(RESERVED_PREFIX) && range.start < range.end)
            .map(|(key, range)| {
                let header = self.headers().get(key);
                (key.clone(), sealed_cover(header.as_ref(), range))
            })
            .collect();
        if !sealed.is_empty() {
            self.inner.prefetch(&sealed);
        }
    }
}

/// The sealed bytes that hold plaintext `range` (not empty) of an object
/// with `header`, or (header unknown) a range that holds them for any chunk
/// size (chunk sizes are powers of two between the smallest and the largest):
/// the chunk that holds the range's start begins at or after a multiple of
/// the largest size, the one that holds its end ends at or before the next
/// multiple of the largest size, and there is at most one tag per smallest
/// chunk.
fn sealed_cover(header: Option<&Header>, range: &Range<u64>) -> Range<u64> {
    let tag = SEALED_TAG_BYTES as u64;
    if let Some(header) = header {
        let chunk = header.chunk_bytes as u64;
        let first = range.start.min(header.plain_len) / chunk;
        let last = (range.end.min(header.plain_len).max(1) - 1) / chunk + 1;
        let last = last.clamp(first + 1, header.chunks());
        return header.sealed_offset(first.min(last - 1))..header.sealed_offset(last);
    }
    let (small, large) = (SEALED_CHUNK_BYTES_MIN as u64, SEALED_CHUNK_BYTES_MAX as u64);
    let first = range.start / large;
    let header_bytes = SEALED_HEADER_BYTES as u64;
    let start = header_bytes + first * (large + tag);
    let end = header_bytes + range.end.div_ceil(large) * large + range.end.div_ceil(small) * tag;
    start..end.max(start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;
    use std::sync::Arc;

    const CHUNK: usize = SEALED_CHUNK_BYTES_MIN as usize;

    fn key(byte: u8) -> SealKey {
        SealKey::from_bytes([byte; 32])
    }

    fn sealed(memory: &Arc<MemStore>) -> SealedStore<Arc<MemStore>> {
        SealedStore::open(Arc::clone(memory), &key(7))
            .expect("opens")
            .with_chunk_bytes(CHUNK as u32)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
    }

    fn is_damage(result: Result<Vec<u8>, StorageError>, key: &str) -> bool {
        matches!(result, Err(StorageError::Damaged { key: k, .. }) if k == key)
    }

    #[test]
    fn prefetch_covers_the_sealed_chunks_of_a_range_with_or_without_a_header() {
        for chunk in [
            SEALED_CHUNK_BYTES_MIN,
            SEALED_CHUNK_BYTES,
            SEALED_CHUNK_BYTES_MAX,
        ] {
            let header = Header {
                chunk_bytes: chunk,
                plain_len: 3 << 20,
                nonce_prefix: [0; 16],
            };
            let chunk = chunk as u64;
            for range in [
                0..1,
                4095..4097,
                1_000_000..1_100_000,
                (3 << 20) - 1..3 << 20,
            ] {
                let first = range.start / chunk;
                let last = (range.end - 1) / chunk + 1;
                let needed = header.sealed_offset(first)..header.sealed_offset(last);
                let exact = sealed_cover(Some(&header), &range);
                assert_eq!(exact, needed, "chunk {chunk} range {range:?}");
                let guess = sealed_cover(None, &range);
                assert!(
                    guess.start <= needed.start && guess.end >= needed.end,
                    "chunk {chunk} range {range:?}: {guess:?} misses {needed:?}"
                );
            }
        }
    }

    #[test]
    fn round_trips_every_size_and_every_chunk_boundary() {
        let memory = Arc::new(MemStore::new());
        let store = sealed(&memory);
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 17] {
            let name = format!("objects/{len}");
            let plain = pattern(len);
            store.put_new(&name, &plain).expect("put");
            assert_eq!(store.get(&name, None).expect("get"), plain, "{len}");
            let stored = memory.get(&name, None).expect("raw");
            assert_eq!(
                stored.len(),
                Header::decode(&stored).expect("h").sealed_len() as usize
            );
            let mut points = vec![0, 1, len.saturating_sub(1), len, len + 1, len + CHUNK];
            for boundary in (0..=len + CHUNK).step_by(CHUNK) {
                points.extend([boundary.saturating_sub(1), boundary, boundary + 1]);
            }
            for &start in &points {
                for &end in &points {
                    let got = store
                        .get(&name, Some(start as u64..end as u64))
                        .expect("range");
                    let want = plain.get(start.min(len)..end.min(len)).unwrap_or(&[]);
                    assert_eq!(got, want, "len {len} range {start}..{end}");
                }
            }
        }
    }

    #[test]
    fn store_underneath_sees_only_ciphertext_and_names() {
        let memory = Arc::new(MemStore::new());
        let store = sealed(&memory);
        let plain = b"secret heap bytes ".repeat(400);
        store.put_new("procs/p/segments/a", &plain).expect("put");
        let stored = memory.get("procs/p/segments/a", None).expect("raw");
        assert!(!stored.windows(18).any(|w| w == b"secret heap bytes "));
        assert_eq!(store.list("").expect("list"), vec!["procs/p/segments/a"]);
        assert!(matches!(
            store.get(KEYCHECK_KEY, None),
            Err(StorageError::InvalidKey(_))
        ));
        assert!(refuse_sealed(&store).is_ok());
        assert!(matches!(
            refuse_sealed(&*memory),
            Err(StorageError::KeyRequired)
        ));
    }

    #[test]
    fn every_flipped_bit_is_refused_as_damage() {
        let memory = Arc::new(MemStore::new());
        let store = sealed(&memory);
        let plain = pattern(3 * CHUNK + 5);
        store.put_new("obj", &plain).expect("put");
        let len = memory.get("obj", None).expect("raw").len();
        // Every header byte, and bytes spread over every chunk and tag.
        let offsets = (0..SEALED_HEADER_BYTES).chain((SEALED_HEADER_BYTES..len).step_by(97));
        for offset in offsets.chain([len - 1]) {
            assert!(memory.flip_bit("obj", offset, 3));
            let fresh = sealed(&memory);
            assert!(is_damage(fresh.get("obj", None), "obj"), "byte {offset}");
            let whole = fresh.get("obj", Some(0..plain.len() as u64));
            assert!(is_damage(whole, "obj"), "byte {offset}");
            assert!(memory.flip_bit("obj", offset, 3));
        }
        assert_eq!(sealed(&memory).get("obj", None).expect("intact"), plain);
    }

    #[test]
    fn truncation_at_any_point_is_refused_as_damage() {
        let memory = Arc::new(MemStore::new());
        let store = sealed(&memory);
        let plain = pattern(2 * CHUNK);
        store.put_new("obj", &plain).expect("put");
        let stored = memory.get("obj", None).expect("raw");
        let chunk_end = SEALED_HEADER_BYTES + CHUNK + SEALED_TAG_BYTES;
        for cut in [0, 10, SEALED_HEADER_BYTES, chunk_end, stored.len() - 1] {
            assert!(memory.replace("obj", stored[..cut].to_vec()));
            let fresh = sealed(&memory);
            assert!(is_damage(fresh.get("obj", None), "obj"), "cut {cut}");
            let tail = fresh.get("obj", Some(0..u64::MAX));
            assert!(is_damage(tail, "obj"), "cut {cut}");
        }
        // Past the end of a truncated object: still refused, not read as shorter.
        assert!(memory.replace("obj", stored[..chunk_end].to_vec()));
        let past = sealed(&memory).get("obj", Some(plain.len() as u64..plain.len() as u64 + 9));
        assert!(is_damage(past, "obj"));
    }

    #[test]
    fn swapped_chunks_and_objects_are_refused_as_damage() {
        let memory = Arc::new(MemStore::new());
        let store = sealed(&memory);
        store.put_new("a", &pattern(2 * CHUNK)).expect("put");
        store.put_new("b", &pattern(2 * CHUNK)).expect("put");
        let stored = memory.get("a", None).expect("raw");
        let sealed_chunk = CHUNK + SEALED_TAG_BYTES;
        let (first, second) = stored[SEALED_HEADER_BYTES..].split_at(sealed_chunk);
        let mut swapped = stored[..SEALED_HEADER_BYTES].to_vec();
        swapped.extend_from_slice(second);
        swapped.extend_from_slice(first);
        assert!(memory.replace("a", swapped));
        assert!(is_damage(sealed(&memory).get("a", None), "a"));
        // Object b's bytes under name a (same plaintext, same length).
        let other = memory.get("b", None).expect("raw");
        assert!(memory.replace("a", other.clone()));
        assert!(is_damage(sealed(&memory).get("a", None), "a"));
        // Replayed under a new name.
        memory.put_new("c", &other).expect("raw put");
        assert!(is_damage(sealed(&memory).get("c", Some(0..10)), "c"));
    }

    #[test]
    fn wrong_key_and_unsealed_stores_are_one_clear_error() {
        let memory = Arc::new(MemStore::new());
        sealed(&memory).put_new("obj", b"x").expect("put");
        let error = SealedStore::open(Arc::clone(&memory), &key(8)).expect_err("wrong key");
        assert!(matches!(&error, StorageError::Damaged { key, .. } if key == KEYCHECK_KEY));
        assert!(error
            .to_string()
            .starts_with("wrong key or damaged object sealed/keycheck"));
        let plain = Arc::new(MemStore::new());
        plain.put_new("procs/p/manifests/1", b"plain").expect("put");
        let error = SealedStore::open(plain, &key(7)).expect_err("not sealed");
        assert!(matches!(error, StorageError::NotSealed));
    }

    #[test]
    fn a_new_local_store_with_a_run_lock_is_sealed_at_first_use() {
        let dir = std::env::temp_dir().join(format!("ferrite-sealed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("locks")).expect("dir");
        std::fs::write(dir.join("locks/p"), b"").expect("lock file");
        let local = crate::LocalStore::open(&dir).expect("local");
        let store = SealedStore::open(local, &key(3)).expect("sealed at first use");
        store
            .put_new("procs/p/manifests/1", b"manifest")
            .expect("put");
        drop(store);
        let local = crate::LocalStore::open(&dir).expect("local");
        let store = SealedStore::open(local, &key(3)).expect("reopens");
        let got = store.get("procs/p/manifests/1", Some(0..100)).expect("get");
        assert_eq!(got, b"manifest");
        let local = crate::LocalStore::open(&dir).expect("local");
        assert!(SealedStore::open(local, &key(4)).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_stale_cached_header_is_replaced() {
        let memory = Arc::new(MemStore::new());
        let store = sealed(&memory);
        store.put_new("obj", &pattern(10)).expect("put");
        assert_eq!(store.get("obj", Some(0..4)).expect("read"), pattern(4));
        // Replaced behind the wrapper's back (another opener of the store).
        let other = sealed(&memory);
        other.delete("obj").expect("delete");
        other.put_new("obj", &pattern(2 * CHUNK)).expect("put");
        let got = store.get("obj", Some(CHUNK as u64..CHUNK as u64 + 4));
        assert_eq!(got.expect("read"), pattern(2 * CHUNK)[CHUNK..CHUNK + 4]);
    }

    #[test]
    fn keys_load_from_files_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("ferrite-sealkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let raw = dir.join("raw");
        std::fs::write(&raw, [5; 32]).expect("write");
        assert_eq!(SealKey::from_file(&raw).expect("raw").bytes, [5; 32]);
        let hex = dir.join("hex");
        std::fs::write(&hex, format!("{}\n", "0a".repeat(32))).expect("write");
        assert_eq!(SealKey::from_file(&hex).expect("hex").bytes, [10; 32]);
        let short = dir.join("short");
        std::fs::write(&short, "0a0b\n").expect("write");
        let error = SealKey::from_file(&short).expect_err("short");
        assert!(error
            .to_string()
            .contains("32 raw bytes or 64 hex characters"));
        assert!(matches!(
            SealKey::from_file(dir.join("missing")),
            Err(KeyError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert!(matches!(
            SealKey::from_env("FERRITE_TEST_KEY_THAT_IS_NOT_SET"),
            Err(KeyError::NotSet(_))
        ));
        assert_eq!(format!("{:?}", key(1)), "SealKey(..)");
    }
}
