//! Publishing a file to an index: the legacy upload API that twine and `uv publish` speak.
//!
//! The order is the guarantee. (1) The body is spooled to a temporary file while its
//! SHA-256 and MD5 are computed and its size is capped. (2) Everything is validated —
//! filename grammar, form fields against the filename, digests, archive and METADATA —
//! before a byte reaches storage. (3) The blob (and its METADATA blob) is written
//! create-only and made durable. (4) Only then do the rows appear, in one transaction. A
//! crash at any point leaves at worst an orphan blob, never a row without bytes, and a
//! failed upload leaves nothing at all: the temporary file is removed when dropped.
//!
//! Re-uploading the same bytes under the same filename succeeds (twine retries after any
//! 5xx, and CI jobs are re-run); different bytes under a published filename never do.

use std::collections::HashMap;
use std::str::FromStr;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use md5::Md5;
use pep440_rs::Version;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::auth::{Caller, Principal};
use super::{ServiceError, now_rfc3339};
use crate::db::changes::Change;
use crate::db::{Db, DbError, FileRecord, Lock, NewFile};
use crate::domain::archive::{self, ArchiveError, ArchiveLimits};
use crate::domain::metadata::{self, MetadataError};
use crate::domain::{DistFilename, DistKind, Index, IndexName, ProjectName, Sha256Digest};
use crate::storage::Storage;

/// An uploaded file body, spooled to disk and hashed.
#[derive(Debug)]
pub struct SpooledFile {
    /// The filename the client gave the part.
    pub filename: String,
    /// The temporary file; removed when dropped.
    pub path: tempfile::TempPath,
    /// Bytes received.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: Sha256Digest,
    /// MD5 of the bytes, hex (only to check a client's `md5_digest`).
    pub md5: String,
    /// BLAKE2b-256 of the bytes, hex (to check a client's `blake2_256_digest`).
    pub blake2_256: String,
}

/// The fields of an upload form that Kiln reads, and the file.
#[derive(Debug, Default)]
pub struct UploadForm {
    /// Single-valued text fields by name (`:action`, `name`, `version`, …).
    pub fields: HashMap<String, String>,
    /// The `content` part.
    pub content: Option<SpooledFile>,
    /// The build lease the upload is made under (`X-Kiln-Lease`), if any.
    pub lease_id: Option<String>,
}

/// Form fields that must not appear twice: a second value could disagree with the first.
pub const SINGLE_FIELDS: &[&str] = &[
    ":action",
    "protocol_version",
    "name",
    "version",
    "filetype",
    "sha256_digest",
    "md5_digest",
    "blake2_256_digest",
    "requires_python",
];

/// Longest `Requires-Python` accepted (real ones are a few dozen characters).
pub const MAX_REQUIRES_PYTHON: usize = 200;

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The file is new on this index.
    Created(FileRecord),
    /// The same bytes were already listed under this filename; nothing changed.
    AlreadyPresent(FileRecord),
}

/// An index the caller may upload to: made only by [`open_upload`], so nothing is
/// published without the check.
#[derive(Debug, Clone)]
pub struct UploadTarget {
    index: Index,
    principal: Principal,
}

impl UploadTarget {
    /// The index.
    #[must_use]
    pub fn index(&self) -> &Index {
        &self.index
    }
}

/// Refuses uploads the caller may not make, before the body is read: it needs `upload` on
/// the index, which must be a stage index that is not promotion-only.
pub async fn open_upload(
    db: &Db,
    caller: &Caller,
    name: &IndexName,
) -> Result<UploadTarget, ServiceError> {
    let principal = caller.require(crate::domain::Permission::Upload, name)?;
    let index = super::indexes::get_index(db, name).await?;
    super::indexes::refuse_mirror(&index, "uploads")?;
    if index.settings.promotion_only {
        return Err(ServiceError::Forbidden(format!(
            "index `{}` is promotion-only: files reach it only by `kiln promote` of a green build from its source index, never by direct upload",
            index.name
        )));
    }
    Ok(UploadTarget {
        index,
        principal: principal.clone(),
    })
}

/// Streams a body into a temporary file in `tmp_dir`, hashing it and enforcing `limit`.
pub async fn spool<S, E>(
    filename: String,
    mut body: S,
    tmp_dir: &std::path::Path,
    limit: u64,
) -> Result<SpooledFile, ServiceError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<ServiceError>,
{
    let temp = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(tmp_dir)
        .map_err(|e| ServiceError::Internal(format!("creating upload temp file: {e}")))?;
    let (std_file, path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(std_file);
    let mut sha256 = Sha256::new();
    let mut md5 = Md5::new();
    let mut blake2 = blake2::Blake2b::<blake2::digest::consts::U32>::new();
    let mut size: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(Into::into)?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ServiceError::TooLarge(format!(
                "`{filename}` is larger than this server's upload limit of {limit} bytes (`--max-upload-size`)"
            )));
        }
        sha256.update(&chunk);
        md5.update(&chunk);
        blake2.update(&chunk);
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    Ok(SpooledFile {
        filename,
        path,
        size,
        sha256: Sha256Digest::from_bytes(&sha256.finalize().into()),
        md5: hex::encode(md5.finalize()),
        blake2_256: hex::encode(blake2.finalize()),
    })
}

fn field<'a>(form: &'a UploadForm, name: &str) -> Option<&'a str> {
    form.fields.get(name).map(String::as_str)
}

fn required<'a>(form: &'a UploadForm, name: &str) -> Result<&'a str, ServiceError> {
    field(form, name)
        .ok_or_else(|| ServiceError::Invalid(format!("the upload form has no `{name}` field")))
}

/// Checks a form on its own: the action and protocol, the required fields, the filename
/// and its agreement with the fields, and the digests against the received bytes. No
/// I/O beyond what the spooled file already holds, so it can be fuzzed.
pub fn validate_form(form: &UploadForm) -> Result<DistFilename, ServiceError> {
    let action = field(form, ":action").unwrap_or("file_upload");
    if action != "file_upload" {
        return Err(ServiceError::Invalid(format!(
            "unknown `:action` `{}`: Kiln accepts only `file_upload`",
            action.escape_debug()
        )));
    }
    if let Some(protocol) = field(form, "protocol_version")
        && protocol != "1"
    {
        return Err(ServiceError::Invalid(format!(
            "unsupported `protocol_version` `{}`: Kiln speaks version 1",
            protocol.escape_debug()
        )));
    }
    let name = required(form, "name")?;
    let version = required(form, "version")?;
    let content = form
        .content
        .as_ref()
        .ok_or_else(|| ServiceError::Invalid("the upload form has no `content` file".into()))?;
    let dist = check_form(form, name, version, content)?;
    check_digests(form, content)?;
    Ok(dist)
}

/// Validates an upload and lists its file on `index`.
pub async fn publish(
    db: &Db,
    storage: &Storage,
    archive_limits: ArchiveLimits,
    target: &UploadTarget,
    form: UploadForm,
) -> Result<Published, ServiceError> {
    let UploadTarget { index, principal } = target;
    let dist = validate_form(&form)?;
    let content = form
        .content
        .as_ref()
        .ok_or_else(|| ServiceError::Invalid("the upload form has no `content` file".into()))?;

    // A retried upload of the same bytes is answered before any further work.
    if let Some(existing) = db.find_file(index.id, &dist.filename).await? {
        return same_or_conflict(index, existing, &content.sha256);
    }
    // Checked again when the row is written; this answer just comes before any storing.
    refuse_lookalike(
        index,
        &dist,
        &db.files_of_project(&[index.id], dist.project.as_str())
            .await?,
    )?;

    let metadata = inspect(&dist, content, archive_limits).await?;
    let requires_python = match &metadata {
        Some((_, meta)) => meta.requires_python.clone(),
        None => field(&form, "requires_python")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    };
    if let Some(text) = &requires_python {
        check_requires_python(text, &dist.filename)?;
    }

    storage
        .put_file(&content.sha256, &content.path, content.size)
        .await?;
    let metadata_blob = match metadata {
        Some((bytes, _)) => {
            let bytes = Bytes::from(bytes);
            let digest = Sha256Digest::of(&bytes);
            let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
            storage.put_bytes(&digest, bytes.clone()).await?;
            Some((digest, size, bytes))
        }
        None => None,
    };
    let stored = Stored {
        content,
        metadata: metadata_blob.as_ref().map(|(d, _, b)| (d, b)),
    };

    let version = dist.version.to_string();
    let now = now_rfc3339();
    let new = NewFile {
        index_id: index.id,
        project: dist.project.as_str(),
        version: &version,
        filename: &dist.filename,
        kind: dist.kind.as_str(),
        sha256: content.sha256.as_str(),
        size: i64::try_from(content.size).unwrap_or(i64::MAX),
        requires_python: requires_python.as_deref(),
        metadata: metadata_blob.as_ref().map(|(d, s, _)| (d.as_str(), *s)),
        uploaded_by: &principal.name,
        uploaded_at: &now,
        build: None,
    };
    let record = match insert_row(db, index, &dist, &new, form.lease_id.as_deref()).await {
        Ok(Ok(record)) => {
            stored.keep(storage).await?;
            record
        }
        Ok(Err(existing)) => {
            stored.drop_unlisted(db, storage).await;
            return same_or_conflict(index, existing, &content.sha256);
        }
        Err(refused) => {
            stored.drop_unlisted(db, storage).await;
            return Err(refused);
        }
    };
    tracing::info!(
        index.name = %index.name,
        file.name = %record.filename,
        file.sha256 = %record.sha256,
        size_bytes = record.size,
        uploaded_by = %principal.name,
        "file published"
    );
    let metrics = crate::metrics::metrics();
    metrics.upload_files.inc();
    metrics.upload_bytes.inc_by(record.size);
    Ok(Published::Created(record))
}

/// The blobs an upload stored before its row was decided, and the bytes to store them
/// again from.
///
/// A refused upload leaves no blob, and a concurrent upload of the same bytes must never
/// lose its blob to that cleanup. So a loser deletes a blob only while nothing lists it,
/// then looks again and puts it back if a row appeared meanwhile; and a winner, after its
/// row committed, makes sure its blobs exist (putting them back if a loser's delete got
/// in between). Whichever order the steps interleave in, a listed blob ends stored.
struct Stored<'a> {
    content: &'a SpooledFile,
    metadata: Option<(&'a Sha256Digest, &'a Bytes)>,
}

impl Stored<'_> {
    /// After the row committed: every blob it names is in storage.
    async fn keep(&self, storage: &Storage) -> Result<(), ServiceError> {
        if !storage.exists(&self.content.sha256).await? {
            tracing::warn!(sha256 = %self.content.sha256, "a refused upload's cleanup removed this upload's blob; storing it again");
            storage
                .put_file(&self.content.sha256, &self.content.path, self.content.size)
                .await?;
        }
        if let Some((digest, bytes)) = self.metadata
            && !storage.exists(digest).await?
        {
            storage.put_bytes(digest, bytes.clone()).await?;
        }
        Ok(())
    }

    /// After the row was refused: the blobs nothing lists are deleted (see the type).
    async fn drop_unlisted(&self, db: &Db, storage: &Storage) {
        let content = (&self.content.sha256, None);
        let metadata = self.metadata.map(|(d, b)| (d, Some(b)));
        for (digest, bytes) in std::iter::once(content).chain(metadata) {
            if let Err(err) = Self::drop_one(db, storage, digest, bytes, self.content).await {
                tracing::warn!(sha256 = %digest, error = %err, "a refused upload's blob could not be cleaned up; it stays until garbage collection");
            }
        }
    }

    async fn drop_one(
        db: &Db,
        storage: &Storage,
        digest: &Sha256Digest,
        bytes: Option<&Bytes>,
        content: &SpooledFile,
    ) -> Result<(), ServiceError> {
        if db.blob_listed(digest.as_str()).await? {
            return Ok(());
        }
        storage.delete(digest).await?;
        if db.blob_listed(digest.as_str()).await? {
            if let Some(bytes) = bytes {
                storage.put_bytes(digest, bytes.clone()).await?;
            } else {
                storage
                    .put_file(digest, &content.path, content.size)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Inserts the file row in one transaction, unless the filename is already taken:
/// `Ok(Err(existing))` hands back the row that holds it. While the release is being built
/// under a lease, only the lease holder's upload is accepted.
async fn insert_row(
    db: &Db,
    index: &Index,
    dist: &DistFilename,
    new: &NewFile<'_>,
    lease_id: Option<&str>,
) -> Result<Result<FileRecord, FileRecord>, ServiceError> {
    let mut tx = db.begin_write().await?;
    // Lookalike names and the lease check are read, then written: one project at a time.
    tx.lock(Lock::Project(index.id, dist.project.as_str()))
        .await?;
    if let Some(existing) = Db::find_file_tx(&mut tx, index.id, &dist.filename).await? {
        return Ok(Err(existing));
    }
    if let Some((trash_id, until)) = Db::trashed_file_tx(&mut tx, index.id, &dist.filename).await? {
        return Err(ServiceError::Conflict(format!(
            "`{}` was removed from `{}` and is in its trash (entry {trash_id}, until {}): restore it with `kiln trash restore {trash_id}`, or upload under a new version",
            dist.filename,
            index.name,
            chrono::DateTime::from_timestamp_millis(until)
                .map_or_else(|| until.to_string(), |t| t.to_rfc3339())
        )));
    }
    // Naming a blob and collecting it take turns (see `service::gc`).
    let mut digests = vec![new.sha256];
    digests.extend(new.metadata.map(|(digest, _)| digest));
    digests.sort_unstable();
    digests.dedup();
    for digest in digests {
        tx.lock(Lock::Blob(digest)).await?;
    }
    let own = Db::own_project_files_tx(&mut tx, index.id, dist.project.as_str()).await?;
    refuse_lookalike(index, dist, &own)?;
    if own.is_empty() {
        tx.changed(Change::Projects(index.id));
    }
    let build =
        super::builds::check_upload_lease(&mut tx, index, &dist.project, &dist.version, lease_id)
            .await?;
    // A file uploaded under the lease names its build and carries its provenance.
    let provenance = build
        .as_ref()
        .and_then(|b| b.provenance.as_ref())
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| ServiceError::Internal(format!("encoding provenance: {e}")))?;
    let new = NewFile {
        build: build.as_ref().map(|b| b.id).zip(provenance.as_deref()),
        ..new.clone()
    };
    let new = &new;
    match Db::insert_file_tx(&mut tx, new).await {
        Ok(()) => {}
        Err(DbError::Conflict) => {
            drop(tx);
            let existing = db
                .find_file(index.id, &dist.filename)
                .await?
                .ok_or_else(|| {
                    ServiceError::Internal("file row vanished after a conflict".into())
                })?;
            return Ok(Err(existing));
        }
        Err(e) => return Err(e.into()),
    }
    let record = Db::find_file_tx(&mut tx, index.id, &dist.filename)
        .await?
        .ok_or_else(|| ServiceError::Internal("inserted file row not found".into()))?;
    tx.commit().await?;
    Ok(Ok(record))
}

/// Checks the form's name, version and filetype against the filename.
fn check_form(
    form: &UploadForm,
    name: &str,
    version: &str,
    content: &SpooledFile,
) -> Result<DistFilename, ServiceError> {
    let dist =
        DistFilename::parse(&content.filename).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let form_project = ProjectName::new(name)
        .map_err(|e| ServiceError::Invalid(format!("form field `name`: {e}")))?;
    if form_project != dist.project {
        return Err(ServiceError::Invalid(format!(
            "form field `name` is `{name}`, but `{}` is a file of project `{}`",
            dist.filename, dist.project
        )));
    }
    let form_version = Version::from_str(version).map_err(|_| {
        ServiceError::Invalid(format!(
            "form field `version` `{}` is not a valid PEP 440 version",
            version.escape_debug()
        ))
    })?;
    if form_version != dist.version {
        return Err(ServiceError::Invalid(format!(
            "form field `version` is `{version}`, but `{}` is a file of version `{}`",
            dist.filename, dist.version
        )));
    }
    if let Some(filetype) = field(form, "filetype")
        && filetype != dist.kind.form_filetype()
    {
        return Err(ServiceError::Invalid(format!(
            "form field `filetype` is `{}`, but `{}` is a {} (`{}`)",
            filetype.escape_debug(),
            dist.filename,
            dist.kind,
            dist.kind.form_filetype()
        )));
    }
    if content.size == 0 {
        return Err(ServiceError::Invalid(format!(
            "`{}` is empty",
            dist.filename
        )));
    }
    Ok(dist)
}

/// A `Requires-Python` value must be a PEP 440 specifier set of bounded length: it goes
/// into every project page pip reads.
fn check_requires_python(text: &str, filename: &str) -> Result<(), ServiceError> {
    if text.len() > MAX_REQUIRES_PYTHON {
        return Err(ServiceError::Invalid(format!(
            "`{filename}`: Requires-Python is {} bytes long; at most {MAX_REQUIRES_PYTHON} are accepted",
            text.len()
        )));
    }
    pep440_rs::VersionSpecifiers::from_str(text).map_err(|e| {
        ServiceError::Invalid(format!(
            "`{filename}`: Requires-Python `{}` is not a PEP 440 specifier set ({e})",
            text.escape_debug()
        ))
    })?;
    Ok(())
}

/// Checks the digests the client sent against the bytes received.
fn check_digests(form: &UploadForm, content: &SpooledFile) -> Result<(), ServiceError> {
    let sha256 = field(form, "sha256_digest");
    let blake2 = field(form, "blake2_256_digest");
    if sha256.is_none() && blake2.is_none() {
        return Err(ServiceError::Invalid(
            "the upload form has no `sha256_digest` (nor `blake2_256_digest`) field: without a strong digest Kiln cannot tell a corrupted transfer from the file you built".into(),
        ));
    }
    // Every digest the form carries is checked: one that is wrong means the bytes are not
    // what the client built, whichever digest the server happens to prefer.
    let digests = [
        ("sha256_digest", sha256, content.sha256.as_str(), 64),
        ("blake2_256_digest", blake2, content.blake2_256.as_str(), 64),
        (
            "md5_digest",
            field(form, "md5_digest"),
            content.md5.as_str(),
            32,
        ),
    ];
    for (name, given, actual, hex_len) in digests {
        let Some(given) = given.map(str::trim) else {
            continue;
        };
        if given.len() != hex_len || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ServiceError::Invalid(format!(
                "`{name}` is not {hex_len} hex digits (form says `{}`)",
                given.chars().take(80).collect::<String>().escape_debug()
            )));
        }
        if !given.eq_ignore_ascii_case(actual) {
            return Err(ServiceError::Invalid(format!(
                "`{name}` does not match the bytes received for `{}` (form says `{given}`, received `{actual}`): the upload was corrupted or truncated; retry",
                content.filename
            )));
        }
    }
    Ok(())
}

/// Reads a wheel's METADATA (checking it agrees with the filename), or sanity-checks an
/// sdist's container format.
async fn inspect(
    dist: &DistFilename,
    content: &SpooledFile,
    limits: ArchiveLimits,
) -> Result<Option<(Vec<u8>, metadata::CoreMetadata)>, ServiceError> {
    let path = content.path.to_path_buf();
    let dist = dist.clone();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        match dist.kind {
            DistKind::Wheel => metadata::read_wheel_metadata(file, &dist, limits)
                .map(Some)
                .map_err(|e| match e {
                    MetadataError::Archive(
                        ArchiveError::TooLarge { .. } | ArchiveError::TooManyEntries { .. },
                    )
                    | MetadataError::TooLarge { .. } => ServiceError::TooLarge(e.to_string()),
                    _ => ServiceError::Invalid(e.to_string()),
                }),
            DistKind::Sdist => {
                use std::io::Read as _;
                let mut magic = [0u8; 4];
                let n = file.read(&mut magic)?;
                let is_zip = std::path::Path::new(&dist.filename)
                    .extension()
                    .is_some_and(|ext| ext.eq_ignore_ascii_case("zip"));
                let (ok, what) = if is_zip {
                    (n == 4 && magic[..2] == *b"PK", "a zip archive")
                } else {
                    (
                        n >= 2 && magic[..2] == [0x1f, 0x8b],
                        "a gzip-compressed tar archive",
                    )
                };
                if !ok {
                    return Err(ServiceError::Invalid(format!(
                        "`{}` is not {what}, as its extension says",
                        dist.filename
                    )));
                }
                let file = std::fs::File::open(&path)?;
                let checked = if is_zip {
                    archive::check_zip_sdist(file, &dist.filename, limits)
                } else {
                    archive::check_tar_gz(std::io::BufReader::new(file), &dist.filename, limits)
                };
                checked.map(|()| None).map_err(|e| match e {
                    ArchiveError::TooLarge { .. } | ArchiveError::TooManyEntries { .. } => {
                        ServiceError::TooLarge(e.to_string())
                    }
                    _ => ServiceError::Invalid(e.to_string()),
                })
            }
        }
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("inspecting upload: {e}")))?
}

/// Refuses a file that installers could not tell apart from one already on the index
/// under another spelling (see [`DistFilename::same_distribution`]).
fn refuse_lookalike(
    index: &Index,
    dist: &DistFilename,
    existing: &[FileRecord],
) -> Result<(), ServiceError> {
    for other in existing.iter().filter(|f| f.filename != dist.filename) {
        if DistFilename::parse(&other.filename).is_ok_and(|o| dist.same_distribution(&o)) {
            return Err(ServiceError::Conflict(format!(
                "File already exists: `{}` is the same distribution as `{}` on index `{}` (names, versions and tags normalize alike); installers could not tell them apart, so Kiln keeps the first",
                dist.filename, other.filename, index.name
            )));
        }
    }
    Ok(())
}

fn same_or_conflict(
    index: &Index,
    existing: FileRecord,
    sha256: &Sha256Digest,
) -> Result<Published, ServiceError> {
    if existing.sha256 == *sha256 {
        Ok(Published::AlreadyPresent(existing))
    } else {
        Err(ServiceError::Conflict(format!(
            "File already exists: `{}` is on index `{}` with different contents (sha256 {}, this upload {}). Builds must be reproducible: once published, a file never changes, because test results and lock files refer to its sha256. Publish a new version (or build number) instead.",
            existing.filename, index.name, existing.sha256, sha256
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with one index listing a file whose bytes are `listed`.
    async fn db_listing(dir: &std::path::Path, listed: &Sha256Digest) -> Db {
        let url = format!("sqlite://{}/kiln.db?mode=rwc", dir.display());
        let db = Db::connect(&url).await.unwrap();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        for statement in [
            "INSERT INTO indexes (id, namespace, name, kind, volatile, promotion_only, created_at, updated_at) VALUES (1, 'root', 'x', 'stage', 0, 0, 't', 't')".to_owned(),
            format!("INSERT INTO blobs (sha256, size, created_at) VALUES ('{listed}', 1, 't')"),
            format!("INSERT INTO files (index_id, project, version, filename, kind, sha256, size, uploaded_at, uploaded_by) VALUES (1, 'demo', '1', 'demo-1.tar.gz', 'sdist', '{listed}', 1, 't', 'ci')"),
        ] {
            sqlx::query(&statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
        db
    }

    fn spooled(dir: &std::path::Path, bytes: &[u8]) -> SpooledFile {
        let path = dir.join(format!("spool-{}", Sha256Digest::of(bytes)));
        std::fs::write(&path, bytes).unwrap();
        SpooledFile {
            filename: "demo-1.tar.gz".into(),
            path: tempfile::TempPath::try_from_path(path).unwrap(),
            size: bytes.len() as u64,
            sha256: Sha256Digest::of(bytes),
            md5: String::new(),
            blake2_256: String::new(),
        }
    }

    #[tokio::test]
    async fn a_refused_upload_drops_only_what_nothing_lists_and_a_winner_restores_its_blob() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let storage =
            Storage::from_url(&format!("file://{}", dir.path().join("s").display())).unwrap();
        let listed = spooled(dir.path(), b"listed bytes");
        let loser = spooled(dir.path(), b"refused bytes");
        let db = db_listing(dir.path(), &listed.sha256).await;
        for file in [&listed, &loser] {
            storage
                .put_file(&file.sha256, &file.path, file.size)
                .await
                .unwrap();
        }
        for file in [&listed, &loser] {
            let stored = Stored {
                content: file,
                metadata: None,
            };
            stored.drop_unlisted(&db, &storage).await;
        }
        assert!(
            storage.exists(&listed.sha256).await.unwrap(),
            "listed: kept"
        );
        assert!(
            !storage.exists(&loser.sha256).await.unwrap(),
            "unlisted: dropped"
        );
        // A winner whose blob a loser's cleanup removed after the winner's row committed
        // stores it again.
        storage.delete(&listed.sha256).await.unwrap();
        let winner = Stored {
            content: &listed,
            metadata: None,
        };
        winner.keep(&storage).await.unwrap();
        assert!(storage.exists(&listed.sha256).await.unwrap());
    }
}
