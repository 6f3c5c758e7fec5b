//! Artifact bytes, content-addressed, behind `object_store`.
//!
//! Keys are `blobs/sha256/ab/cd/<digest>`: the digest *is* the identity, so a blob is
//! written once, never changed, and shared by every index that lists it. Writes happen
//! only after the digest was verified, and are create-only where the store supports it
//! (the local directory, and S3 through `If-None-Match: *`); for large multipart writes the
//! content address makes a racing second writer harmless (same key, same bytes).
//!
//! Backends: `file:///dir` (the default), `s3://bucket/prefix` (any S3-compatible store;
//! endpoint, region and credentials from the usual `AWS_*` variables or
//! [`StorageOptions::settings`]), and `memory://` for unit tests. An S3 store can hand
//! downloads to clients as presigned URLs ([`Storage::presigned_get`]) so file bytes skip
//! the replicas.
//!
//! Traps:
//! - `object_store`'s local backend does not fsync. A database row must never point at
//!   bytes a power cut could lose, so local writes are synced (file and directory) here.
//! - Its local reads come in 8 KiB chunks through a blocking pool; downloads of local files
//!   are streamed from the file directly with large buffers instead.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::signer::Signer as _;
use object_store::{
    ClientConfigKey, GetOptions, GetRange, GetResultPayload, ObjectStore, PutMode, PutOptions,
    PutPayload, RetryConfig, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use crate::domain::Sha256Digest;

/// Blobs up to this size are written in one create-only `put`.
const SINGLE_PUT_LIMIT: u64 = 16 * 1024 * 1024;
/// Part size for multipart writes and buffer size for local reads.
const CHUNK: usize = 8 * 1024 * 1024;
const READ_BUFFER: usize = 1024 * 1024;
/// Chunks a local download may be read ahead of the socket.
const READ_AHEAD: usize = 8;

/// What went wrong with the object store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The blob does not exist.
    #[error("blob `{0}` is missing from storage")]
    NotFound(String),
    /// The storage URL is not one this build supports.
    #[error(
        "unsupported storage URL `{0}`: use `file:///absolute/path`, `s3://bucket/prefix` or `memory://`"
    )]
    UnsupportedUrl(String),
    /// An option given for a store that is not S3.
    #[error("{0} applies to `s3://` storage only")]
    NeedsS3(&'static str),
    /// An option given for a store that is not a local directory.
    #[error("{0} applies to `file://` storage only (the proxy reads the files from disk)")]
    NeedsFile(&'static str),
    /// An `--accel-redirect` prefix that is not a path.
    #[error(
        "--accel-redirect `{0}` must be a path that starts and ends with `/`, e.g. `/_kiln_storage/` (an `internal` location of the proxy)"
    )]
    BadAccelPrefix(String),
    /// A `--storage-option` this backend does not know.
    #[error(
        "unknown storage option `{0}` for an S3 store (see object_store's AmazonS3ConfigKey, e.g. `aws_endpoint`, `aws_region`, `aws_allow_http`)"
    )]
    UnknownOption(String),
    /// Anything the store reported.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Local file I/O (temp files, fsync).
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes that do not hash to the key they were to replace a stored blob under (a
    /// caller's bug): the stored blob is left alone.
    #[error("refusing to replace blob `{0}` with bytes of another digest")]
    Mismatch(String),
}

/// A stream of blob bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// How to reach an object store, beyond its URL.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// The longest an S3 request may take, retries included (`object_store`'s defaults are
    /// 30 s a request and 3 minutes of retries: a frozen store held every upload and
    /// download for 180 s).
    pub timeout: std::time::Duration,
    /// `object_store` settings for an S3 store, e.g. `("aws_endpoint", "http://…")`; they
    /// win over the `AWS_*` environment variables.
    pub settings: Vec<(String, String)>,
    /// Answer downloads with a redirect to a presigned URL valid this long (S3 only).
    pub presign_downloads: Option<std::time::Duration>,
    /// Answer local downloads with `X-Accel-Redirect: <prefix><blob key>`, for a front
    /// proxy (nginx) that maps the prefix to the storage directory (`file://` only).
    pub accel_redirect: Option<String>,
}

/// The default [`StorageOptions::timeout`].
pub const DEFAULT_STORAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_STORAGE_TIMEOUT,
            settings: Vec::new(),
            presign_downloads: None,
            accel_redirect: None,
        }
    }
}

/// An S3 store's signer and the key prefix its blobs live under.
#[derive(Debug)]
struct Presigner {
    s3: Arc<AmazonS3>,
    prefix: Path,
    ttl: std::time::Duration,
}

/// The blob store, cheap to clone.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Set for the local backend: where keys live on disk (for fsync and fast reads).
    local_root: Option<PathBuf>,
    /// Set for an S3 store with presigned downloads turned on.
    presigner: Option<Arc<Presigner>>,
    /// Set for a local store whose downloads a front proxy sends (`--accel-redirect`).
    accel_prefix: Option<Arc<str>>,
    /// `file`, `s3` or `memory`, as `/+health` reports it.
    kind: &'static str,
}

impl Storage {
    /// Opens the store a URL names with default options (`AWS_*` variables only).
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        Self::open(url, &StorageOptions::default())
    }

    /// Opens the store a URL names: `file:///path` (created if missing), `s3://bucket/prefix`
    /// or `memory://`.
    pub fn open(url: &str, options: &StorageOptions) -> Result<Self, StorageError> {
        let parsed =
            url::Url::parse(url).map_err(|_| StorageError::UnsupportedUrl(url.to_owned()))?;
        if parsed.scheme() != "s3" {
            if options.presign_downloads.is_some() {
                return Err(StorageError::NeedsS3("--presign-downloads"));
            }
            if !options.settings.is_empty() {
                return Err(StorageError::NeedsS3("--storage-option"));
            }
        }
        let accel_prefix = match &options.accel_redirect {
            None => None,
            Some(_) if parsed.scheme() != "file" => {
                return Err(StorageError::NeedsFile("--accel-redirect"));
            }
            Some(prefix)
                if prefix.starts_with('/')
                    && prefix.ends_with('/')
                    && prefix.chars().all(|c| c.is_ascii_graphic()) =>
            {
                Some(Arc::from(prefix.as_str()))
            }
            Some(other) => return Err(StorageError::BadAccelPrefix(other.clone())),
        };
        match parsed.scheme() {
            "memory" => Ok(Self {
                store: Arc::new(InMemory::new()),
                local_root: None,
                presigner: None,
                accel_prefix: None,
                kind: "memory",
            }),
            "file" => {
                let root = parsed
                    .to_file_path()
                    .map_err(|()| StorageError::UnsupportedUrl(url.to_owned()))?;
                std::fs::create_dir_all(&root)?;
                Ok(Self {
                    store: Arc::new(LocalFileSystem::new_with_prefix(&root)?),
                    local_root: Some(root),
                    presigner: None,
                    accel_prefix,
                    kind: "file",
                })
            }
            "s3" if parsed.host_str().is_some_and(|h| !h.is_empty()) => {
                Self::open_s3(url, &parsed, options)
            }
            _ => Err(StorageError::UnsupportedUrl(url.to_owned())),
        }
    }

    fn open_s3(
        url: &str,
        parsed: &url::Url,
        options: &StorageOptions,
    ) -> Result<Self, StorageError> {
        // Bounded: a store that does not answer fails the request within the timeout
        // (a 503 naming the store), not after object_store's 3 minutes of retries. The
        // user's `--storage-option timeout=…` still wins for single requests.
        let millis = options.timeout.as_millis();
        let mut builder = AmazonS3Builder::from_env()
            .with_url(url)
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                format!("{millis}ms"),
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                format!("{}ms", millis.min(5_000)),
            )
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: options.timeout,
                ..RetryConfig::default()
            });
        for (key, value) in &options.settings {
            let key: AmazonS3ConfigKey = key
                .to_ascii_lowercase()
                .parse()
                .map_err(|_| StorageError::UnknownOption(key.clone()))?;
            builder = builder.with_config(key, value);
        }
        let s3 = Arc::new(builder.build()?);
        // object_store takes only the bucket from the URL; the path is our key prefix.
        let prefix = Path::from(parsed.path().trim_matches('/'));
        let whole: Arc<dyn ObjectStore> = s3.clone();
        let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
            whole
        } else {
            Arc::new(PrefixStore::new(whole, prefix.clone()))
        };
        let presigner = options.presign_downloads.map(|ttl| {
            Arc::new(Presigner {
                s3: Arc::clone(&s3),
                prefix,
                ttl,
            })
        });
        Ok(Self {
            store,
            local_root: None,
            presigner,
            accel_prefix: None,
            kind: "s3",
        })
    }

    /// Checks that the store takes writes (the bucket exists, the credentials may write),
    /// so a misconfigured replica fails at start instead of on its first upload. Writes
    /// the small object `kiln-probe` beside `blobs/` (a `HEAD` cannot tell a missing
    /// bucket from a missing key: both are a bare 404).
    pub async fn check(&self) -> Result<(), StorageError> {
        let payload = PutPayload::from_static(b"kiln checks at start that it can write here\n");
        self.store.put(&Path::from("kiln-probe"), payload).await?;
        Ok(())
    }

    /// A presigned URL a client can fetch the blob from directly, when presigned
    /// downloads are on (S3 only).
    pub async fn presigned_get(
        &self,
        digest: &Sha256Digest,
    ) -> Result<Option<url::Url>, StorageError> {
        let Some(presigner) = &self.presigner else {
            return Ok(None);
        };
        let key = Self::blob_key(digest);
        let full = if presigner.prefix.as_ref().is_empty() {
            key
        } else {
            presigner.prefix.parts().chain(key.parts()).collect()
        };
        let url = presigner
            .s3
            .signed_url(axum::http::Method::GET, &full, presigner.ttl)
            .await?;
        Ok(Some(url))
    }

    /// The kind of store, as `/+health` reports it: `file`, `s3` or `memory`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The key of the blob with this digest.
    #[must_use]
    pub fn blob_key(digest: &Sha256Digest) -> Path {
        Path::from(crate::api::blob_key(digest.as_str()))
    }

    /// With `--accel-redirect`: the path a front proxy serves the blob from (its prefix,
    /// then the blob's key under the storage directory).
    #[must_use]
    pub fn accel_redirect(&self, digest: &Sha256Digest) -> Option<String> {
        self.accel_prefix
            .as_ref()
            .map(|prefix| format!("{prefix}{}", Self::blob_key(digest)))
    }

    /// True if the blob is stored.
    pub async fn exists(&self, digest: &Sha256Digest) -> Result<bool, StorageError> {
        match self.store.head(&Self::blob_key(digest)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores small bytes (already verified to hash to `digest`) durably.
    pub async fn put_bytes(&self, digest: &Sha256Digest, bytes: Bytes) -> Result<(), StorageError> {
        let size = bytes.len() as u64;
        if let Some(root) = &self.local_root {
            return put_local(root, digest, size, Source::Bytes(bytes)).await;
        }
        let key = Self::blob_key(digest);
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&key, PutPayload::from(bytes.clone()), create)
            .await
        {
            Ok(_) => Ok(()),
            // Content-addressed: whoever wrote it first wrote the same bytes — if it is
            // whole. An object of another size is replaced.
            Err(object_store::Error::AlreadyExists { .. }) => {
                if self.holds(digest, size).await? {
                    return Ok(());
                }
                // A stored blob is replaced only by bytes checked here to be its own.
                if Sha256Digest::of(&bytes) != *digest {
                    return Err(StorageError::Mismatch(digest.to_string()));
                }
                self.store.put(&key, PutPayload::from(bytes)).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stores the file at `src` (already verified to hash to `digest`) durably.
    pub async fn put_file(
        &self,
        digest: &Sha256Digest,
        src: &FsPath,
        size: u64,
    ) -> Result<(), StorageError> {
        if let Some(root) = &self.local_root {
            return put_local(root, digest, size, Source::File(src.to_path_buf())).await;
        }
        match self.store.head(&Self::blob_key(digest)).await {
            Ok(meta) if meta.size == size => return Ok(()),
            // A stored blob is replaced only by bytes checked here to be its own.
            Ok(_) => {
                let src = src.to_path_buf();
                let hashed = tokio::task::spawn_blocking(move || hash_file(&src))
                    .await
                    .map_err(std::io::Error::other)??;
                if hashed != *digest {
                    return Err(StorageError::Mismatch(digest.to_string()));
                }
                tracing::warn!(file.sha256 = %digest, "a stored blob has the wrong size; replacing it");
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if size <= SINGLE_PUT_LIMIT {
            let bytes = tokio::fs::read(src).await?;
            return self.put_bytes(digest, bytes.into()).await;
        }
        let key = Self::blob_key(digest);
        let upload = self.store.put_multipart(&key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut file = tokio::fs::File::open(src).await?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(2).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        Ok(())
    }

    /// True when an object store already holds the blob whole. An S3 object appears only
    /// complete, so its size is the check; one of another size (a bug, or a hand-made
    /// object) is logged and replaced by the caller.
    async fn holds(&self, digest: &Sha256Digest, size: u64) -> Result<bool, StorageError> {
        match self.store.head(&Self::blob_key(digest)).await {
            Ok(meta) if meta.size == size => Ok(true),
            Ok(meta) => {
                tracing::warn!(file.sha256 = %digest, stored = meta.size, expected = size, "a stored blob has the wrong size; replacing it");
                Ok(false)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a blob (a purged mirror file nothing else refers to). A missing blob is fine.
    pub async fn delete(&self, digest: &Sha256Digest) -> Result<(), StorageError> {
        match self.store.delete(&Self::blob_key(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under `blobs/` that is a blob or a write's leftover (a local
    /// `.kiln-partial-` staging file, or `object_store`'s `#N`), for garbage collection.
    /// Anything else (a hand-made file) is not listed, so never deleted.
    pub async fn list_blobs(&self) -> Result<Vec<StoredObject>, StorageError> {
        if let Some(root) = &self.local_root {
            let root = root.clone();
            return Ok(tokio::task::spawn_blocking(move || walk_local(&root))
                .await
                .map_err(std::io::Error::other)??);
        }
        let mut listed = self.store.list(Some(&Path::from("blobs/sha256")));
        let mut objects = Vec::new();
        while let Some(meta) = listed.try_next().await? {
            let key = meta.location.to_string();
            let name = meta.location.filename().unwrap_or_default();
            if let Some(digest) = classify(name) {
                objects.push(StoredObject {
                    digest,
                    key,
                    size: meta.size,
                    modified: std::time::SystemTime::from(meta.last_modified),
                });
            }
        }
        Ok(objects)
    }

    /// Deletes an object [`Storage::list_blobs`] listed. A missing one is fine.
    pub async fn delete_object(&self, object: &StoredObject) -> Result<(), StorageError> {
        if let Some(root) = &self.local_root {
            return match tokio::fs::remove_file(root.join(&object.key)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            };
        }
        match self.store.delete(&Path::from(object.key.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a whole (small) blob, e.g. a METADATA file.
    pub async fn read_all(&self, digest: &Sha256Digest) -> Result<Bytes, StorageError> {
        let key = Self::blob_key(digest);
        match self.store.get(&key).await {
            Ok(result) => Ok(result.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => {
                Err(StorageError::NotFound(digest.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Streams a blob, or the byte range `range` of it.
    pub async fn stream(
        &self,
        digest: &Sha256Digest,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, StorageError> {
        let key = Self::blob_key(digest);
        let options = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&key, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::NotFound(digest.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let span = result.range.clone();
        match result.payload {
            GetResultPayload::File(file, _) => Ok(read_ahead(file, span)),
            GetResultPayload::Stream(stream) => Ok(stream.map_err(std::io::Error::other).boxed()),
        }
    }
}

/// Streams `span` of a local file, read on a blocking thread that stays up to
/// [`READ_AHEAD`] chunks ahead of the socket, so disk reads and socket writes overlap.
/// A client that stops reading leaves the thread parked on a full channel; a client that
/// disconnects drops the receiver and the thread ends at its next send.
/// An object under `blobs/`, as garbage collection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The blob's digest, or `None` for a write's leftover.
    pub digest: Option<Sha256Digest>,
    /// Its key under the store's root.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: std::time::SystemTime,
}

/// What a file name under `blobs/` is: `Some(Some(digest))` for a blob, `Some(None)` for a
/// write's leftover (`<digest>.kiln-partial-…` or `<digest>#N`), `None` for anything else.
#[allow(clippy::option_option)]
fn classify(name: &str) -> Option<Option<Sha256Digest>> {
    if let Ok(digest) = name.parse::<Sha256Digest>() {
        return Some(Some(digest));
    }
    let (stem, rest) = name
        .split_once(PARTIAL_MARK)
        .or_else(|| name.split_once('#'))?;
    let numbered =
        name.contains('#') && !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    (stem.parse::<Sha256Digest>().is_ok() && (numbered || name.contains(PARTIAL_MARK)))
        .then_some(None)
}

/// The blobs and leftovers under a local store's `blobs/sha256/xx/yy/`.
fn walk_local(root: &FsPath) -> std::io::Result<Vec<StoredObject>> {
    fn entries(dir: &FsPath) -> std::io::Result<Vec<std::fs::DirEntry>> {
        match std::fs::read_dir(dir) {
            Ok(read) => read.collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
    let mut objects = Vec::new();
    for first in entries(&root.join("blobs/sha256"))? {
        for second in entries(&first.path())? {
            for file in entries(&second.path())? {
                let meta = file.metadata()?;
                if !meta.is_file() {
                    continue;
                }
                let name = file.file_name();
                let Some(digest) = name.to_str().and_then(classify) else {
                    continue;
                };
                let path = file.path();
                let key = path
                    .strip_prefix(root)
                    .map_err(std::io::Error::other)?
                    .to_string_lossy()
                    .into_owned();
                objects.push(StoredObject {
                    digest,
                    key,
                    size: meta.len(),
                    modified: meta.modified()?,
                });
            }
        }
    }
    Ok(objects)
}

/// What a local write copies into place.
enum Source {
    Bytes(Bytes),
    File(PathBuf),
}

/// Marks a local blob's staging file (`<digest>.kiln-partial-<random>`, beside the blob);
/// one left by a crash is garbage.
pub const PARTIAL_MARK: &str = ".kiln-partial-";

/// Writes a blob into the local store so that it is never visible torn: the bytes go to a
/// staging file beside it, are synced, then renamed into place (atomic), then the
/// directory is synced. A blob already at the key is kept only if it has the right size
/// and hash (a crash under an earlier version could leave a partial file there, which
/// would be served under the right sha256); otherwise it is replaced.
async fn put_local(
    root: &FsPath,
    digest: &Sha256Digest,
    size: u64,
    source: Source,
) -> Result<(), StorageError> {
    let path = root.join(Storage::blob_key(digest).as_ref());
    let digest = digest.clone();
    tokio::task::spawn_blocking(move || write_local(&path, &digest, size, &source))
        .await
        .map_err(std::io::Error::other)??;
    Ok(())
}

fn write_local(
    path: &FsPath,
    digest: &Sha256Digest,
    size: u64,
    source: &Source,
) -> std::io::Result<()> {
    use std::io::Write as _;
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() == size && hash_file(path)? == *digest => return Ok(()),
        Ok(meta) => {
            // A stored blob is replaced only by bytes checked here to be its own.
            let fresh = match source {
                Source::Bytes(bytes) => Sha256Digest::of(bytes),
                Source::File(src) => hash_file(src)?,
            };
            if fresh != *digest {
                return Err(std::io::Error::other(format!(
                    "refusing to replace blob `{digest}` with bytes of another digest"
                )));
            }
            tracing::warn!(
                file.sha256 = %digest,
                stored = meta.len(),
                expected = size,
                "a stored blob is torn (wrong size or bytes); replacing it"
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a blob key has a directory"))?;
    std::fs::create_dir_all(dir)?;
    let staging = dir.join(format!(
        "{digest}{PARTIAL_MARK}{:016x}",
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&staging)?;
        match source {
            Source::Bytes(bytes) => file.write_all(bytes)?,
            Source::File(src) => {
                std::io::copy(&mut std::fs::File::open(src)?, &mut file)?;
            }
        }
        file.sync_all()?;
        std::fs::rename(&staging, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    written
}

/// The SHA-256 of a local file, read in large chunks.
fn hash_file(path: &FsPath) -> std::io::Result<Sha256Digest> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Sha256Digest::from_bytes(&hasher.finalize().into()))
}

fn read_ahead(mut file: std::fs::File, span: Range<u64>) -> ByteStream {
    use std::io::{Read as _, Seek as _};
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(err) = file.seek(SeekFrom::Start(span.start)) {
            let _ = tx.blocking_send(Err(err));
            return;
        }
        let mut remaining = span.end - span.start;
        while remaining > 0 {
            let want = remaining.min(READ_BUFFER as u64);
            // `read_to_end` fills spare capacity without zeroing it first, and keeps
            // reading until the chunk is whole: one large chunk per channel send.
            let mut buf = Vec::with_capacity(READ_BUFFER);
            let item = match (&mut file).take(want).read_to_end(&mut buf) {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "blob is shorter than its recorded size",
                )),
                Ok(n) => {
                    remaining -= n as u64;
                    Ok(Bytes::from(buf))
                }
                Err(err) => Err(err),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_collection_knows_blobs_and_leftovers_and_nothing_else() {
        let hex = "ab".repeat(32);
        let digest: Sha256Digest = hex.parse().unwrap();
        assert_eq!(classify(&hex), Some(Some(digest)));
        assert_eq!(classify(&format!("{hex}{PARTIAL_MARK}00ff")), Some(None));
        assert_eq!(classify(&format!("{hex}#12")), Some(None));
        for other in [
            "NOTES.txt".to_owned(),
            format!("{hex}#"),
            format!("{hex}#x1"),
            format!("{}#1", &hex[..60]),
            format!("{hex}.bak"),
            "kiln-probe".to_owned(),
        ] {
            assert_eq!(classify(&other), None, "{other} is not Kiln's to delete");
        }
    }

    #[tokio::test]
    async fn a_local_store_lists_its_blobs_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        let storage = Storage::from_url(url.as_str()).unwrap();
        let data = Bytes::from_static(b"listed");
        let digest = Sha256Digest::of(&data);
        storage.put_bytes(&digest, data).await.unwrap();
        let key = Storage::blob_key(&digest);
        let blob_dir = dir
            .path()
            .join(key.as_ref())
            .parent()
            .unwrap()
            .to_path_buf();
        std::fs::write(blob_dir.join(format!("{digest}#1")), b"half").unwrap();
        std::fs::write(blob_dir.join("README"), b"mine").unwrap();
        let mut listed = storage.list_blobs().await.unwrap();
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert_eq!(listed[0].digest, Some(digest.clone()));
        assert_eq!(listed[0].size, 6);
        assert_eq!(listed[1].digest, None);
        storage.delete_object(&listed[1]).await.unwrap();
        assert!(!blob_dir.join(format!("{digest}#1")).exists());
        assert!(blob_dir.join("README").exists());
    }

    /// The conformance story every backend must pass.
    async fn story(storage: Storage) {
        let data = Bytes::from_static(b"hello wheel");
        let digest = Sha256Digest::of(&data);
        assert!(!storage.exists(&digest).await.unwrap());
        storage.put_bytes(&digest, data.clone()).await.unwrap();
        // A second identical write is a no-op, not an error.
        storage.put_bytes(&digest, data.clone()).await.unwrap();
        assert!(storage.exists(&digest).await.unwrap());
        assert_eq!(storage.read_all(&digest).await.unwrap(), data);
        let part: Vec<Bytes> = storage
            .stream(&digest, Some(6..11))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(part.concat(), b"wheel");

        // A large file goes through the multipart path.
        let big = vec![7u8; usize::try_from(SINGLE_PUT_LIMIT).unwrap() + 1234];
        let big_digest = Sha256Digest::of(&big);
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &big).unwrap();
        storage
            .put_file(&big_digest, tmp.path(), big.len() as u64)
            .await
            .unwrap();
        let all: Vec<Bytes> = storage
            .stream(&big_digest, None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(all.concat(), big);
        storage.delete(&digest).await.unwrap();
        assert!(!storage.exists(&digest).await.unwrap());
        storage.delete(&digest).await.unwrap();
        let missing = Sha256Digest::of(b"nope");
        assert!(matches!(
            storage.read_all(&missing).await,
            Err(StorageError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_torn_local_blob_is_replaced_and_a_whole_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        let storage = Storage::from_url(url.as_str()).unwrap();
        let data = vec![42u8; 100_000];
        let digest = Sha256Digest::of(&data);
        let path = dir.path().join(Storage::blob_key(&digest).as_ref());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let src = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(src.path(), &data).unwrap();
        // What a crash can leave: a short file, or the right length of the wrong bytes.
        for torn in [data[..4096].to_vec(), vec![0u8; data.len()]] {
            std::fs::write(&path, &torn).unwrap();
            storage
                .put_file(&digest, src.path(), data.len() as u64)
                .await
                .unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "replaced whole");
        }
        std::fs::write(&path, vec![1u8; 10]).unwrap();
        // Bytes of another digest never replace it (a caller's bug), even a torn one.
        let wrong = storage
            .put_bytes(&digest, Bytes::from_static(b"not the bytes"))
            .await;
        assert!(wrong.is_err(), "{wrong:?}");
        assert_eq!(std::fs::read(&path).unwrap(), vec![1u8; 10]);
        storage
            .put_bytes(&digest, Bytes::from(data.clone()))
            .await
            .unwrap();
        assert_eq!(storage.read_all(&digest).await.unwrap(), data);
        // A whole blob is left alone (same inode), and no staging file stays behind.
        let inode = |p: &std::path::Path| {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata(p).unwrap().ino()
        };
        let before = inode(&path);
        storage
            .put_file(&digest, src.path(), data.len() as u64)
            .await
            .unwrap();
        assert_eq!(inode(&path), before);
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [digest.to_string()], "only the blob itself");
    }

    #[tokio::test]
    async fn an_object_of_the_wrong_size_is_replaced() {
        let storage = Storage::from_url("memory://").unwrap();
        let data = Bytes::from_static(b"the real wheel bytes");
        let digest = Sha256Digest::of(&data);
        let tear = || async {
            storage
                .store
                .put(
                    &Storage::blob_key(&digest),
                    PutPayload::from_static(b"torn"),
                )
                .await
                .unwrap();
        };
        tear().await;
        storage.put_bytes(&digest, data.clone()).await.unwrap();
        assert_eq!(storage.read_all(&digest).await.unwrap(), data);
        let src = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(src.path(), &data).unwrap();
        tear().await;
        storage
            .put_file(&digest, src.path(), data.len() as u64)
            .await
            .unwrap();
        assert_eq!(storage.read_all(&digest).await.unwrap(), data);
    }

    #[tokio::test]
    async fn in_memory_conforms() {
        story(Storage::from_url("memory://").unwrap()).await;
    }

    #[tokio::test]
    async fn local_directory_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        story(Storage::from_url(url.as_str()).unwrap()).await;
    }

    #[test]
    fn refuses_unknown_urls() {
        assert!(matches!(
            Storage::from_url("ftp://x"),
            Err(StorageError::UnsupportedUrl(_))
        ));
        assert!(matches!(
            Storage::from_url("s3:///no-bucket"),
            Err(StorageError::UnsupportedUrl(_))
        ));
    }

    #[test]
    fn accel_redirect_needs_a_local_store_and_a_path_prefix() {
        let accel = |prefix: &str| StorageOptions {
            accel_redirect: Some(prefix.to_owned()),
            ..StorageOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let local = url::Url::from_directory_path(dir.path()).unwrap();
        let digest = Sha256Digest::of(b"x");
        let store = Storage::open(local.as_str(), &accel("/_kiln_storage/")).unwrap();
        assert_eq!(
            store.accel_redirect(&digest).unwrap(),
            format!(
                "/_kiln_storage/blobs/sha256/{}/{}/{digest}",
                &digest.as_str()[..2],
                &digest.as_str()[2..4]
            )
        );
        let plain = Storage::open(local.as_str(), &StorageOptions::default()).unwrap();
        assert_eq!(plain.accel_redirect(&digest), None);
        for bad in ["_kiln_storage/", "/_kiln_storage", "/with space/", ""] {
            let err = Storage::open(local.as_str(), &accel(bad)).unwrap_err();
            assert!(
                matches!(err, StorageError::BadAccelPrefix(_)),
                "{bad}: {err}"
            );
        }
        for elsewhere in ["memory://", "s3://bucket/prefix"] {
            let err = Storage::open(elsewhere, &accel("/_kiln_storage/")).unwrap_err();
            assert!(err.to_string().contains("`file://` storage only"), "{err}");
        }
    }

    #[tokio::test]
    async fn s3_options_are_checked_and_presigning_is_s3_only() {
        let options = |settings: &[(&str, &str)], presign| StorageOptions {
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            presign_downloads: presign,
            ..StorageOptions::default()
        };
        let err = Storage::open("s3://bucket/kiln", &options(&[("aws_endpoitn", "x")], None))
            .unwrap_err();
        assert!(err.to_string().contains("aws_endpoitn"), "{err}");

        // Signing is local: no request is made, so no server is needed here.
        let s3 = Storage::open(
            "s3://bucket/some/prefix",
            &options(
                &[
                    ("aws_endpoint", "http://127.0.0.1:9"),
                    ("aws_allow_http", "true"),
                    ("aws_access_key_id", "id"),
                    ("aws_secret_access_key", "secret"),
                    ("aws_region", "us-east-1"),
                ],
                Some(std::time::Duration::from_secs(300)),
            ),
        )
        .unwrap();
        assert_eq!(s3.kind(), "s3");
        let digest = Sha256Digest::of(b"x");
        let url = s3.presigned_get(&digest).await.unwrap().unwrap();
        assert!(
            url.path().ends_with(&format!(
                "/bucket/some/prefix/blobs/sha256/{}/{}/{digest}",
                &digest.as_str()[..2],
                &digest.as_str()[2..4]
            )),
            "{url}"
        );
        assert!(url.query().unwrap().contains("X-Amz-Expires=300"), "{url}");

        let dir = tempfile::tempdir().unwrap();
        let local_url = url::Url::from_directory_path(dir.path()).unwrap();
        let refused = Storage::open(
            local_url.as_str(),
            &options(&[], Some(std::time::Duration::from_secs(300))),
        )
        .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "--presign-downloads applies to `s3://` storage only"
        );
        let local = Storage::open(local_url.as_str(), &options(&[], None)).unwrap();
        assert_eq!(local.kind(), "file");
        assert!(local.presigned_get(&digest).await.unwrap().is_none());
    }
}
