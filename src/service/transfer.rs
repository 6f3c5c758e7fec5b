//! Moving a server's data between backends: `kiln export DIR` (through the API, while the
//! server runs) and `kiln import DIR` (into an empty database and store).
//!
//! An export directory holds `kiln-export.jsonl` (see `db::transfer`) and the blobs the
//! rows name, content-addressed as the store keeps them (`blobs/sha256/ab/cd/<digest>`).
//! The import checks everything before it writes a row: the format and schema, that
//! every line is whole and the footer counts them, that table and column names are
//! known, that the database is empty, and that every blob is there and hashes to its
//! name; blobs are stored first and the rows go in one transaction, so a failed import
//! leaves no row (and at most blobs that garbage collection takes).

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::ServiceError;
use super::auth::Caller;
use crate::db::transfer::{ExportedRow, FORMAT_VERSION, check_names};
use crate::db::{Db, DbError};
use crate::domain::Sha256Digest;
use crate::storage::{ByteStream, Storage};

pub use crate::api::EXPORT_FILE as METADATA_FILE;

fn require_server_admin(caller: &Caller) -> Result<(), ServiceError> {
    let principal = caller.authenticated()?;
    if principal.is_server_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "an export needs `admin` on `*`: it holds every index, token hash and result".into(),
        ))
    }
}

/// The export's lines, for a server admin.
pub fn export_lines(
    db: &Db,
    caller: &Caller,
) -> Result<tokio::sync::mpsc::Receiver<Result<String, DbError>>, ServiceError> {
    require_server_admin(caller)?;
    Ok(db.export_lines())
}

/// One blob's bytes, for a server admin's export.
pub async fn export_blob(
    storage: &Storage,
    caller: &Caller,
    digest: &Sha256Digest,
) -> Result<ByteStream, ServiceError> {
    require_server_admin(caller)?;
    Ok(storage.stream(digest, None).await?)
}

/// Where an export directory keeps a blob.
#[must_use]
pub fn blob_path(dir: &Path, digest: &Sha256Digest) -> PathBuf {
    dir.join(Storage::blob_key(digest).as_ref())
}

/// What an import brought in.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    /// Rows inserted.
    pub rows: u64,
    /// Blobs verified and stored.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Imports an export directory into an empty database and store (see the module docs).
pub async fn import(db: &Db, storage: &Storage, dir: &Path) -> Result<Imported, ServiceError> {
    let (rows, bootstrapped_at) = read_export(db, dir).await?;
    if !db.is_empty().await? {
        return Err(ServiceError::Conflict(
            "the target database is not empty (it has indexes or tokens): import into a new database, before any server has started on it".into(),
        ));
    }
    let (blobs, bytes) = store_blobs(storage, dir, &rows).await?;
    db.import_rows(&rows, bootstrapped_at.as_deref()).await?;
    let imported = Imported {
        rows: rows.len() as u64,
        blobs,
        bytes,
    };
    tracing::info!(rows = imported.rows, blobs, bytes, "imported");
    Ok(imported)
}

/// Reads and checks an export's metadata file: its rows and the first-start time.
async fn read_export(
    db: &Db,
    dir: &Path,
) -> Result<(Vec<ExportedRow>, Option<String>), ServiceError> {
    let path = dir.join(METADATA_FILE);
    let invalid = |line: usize, why: String| {
        ServiceError::Invalid(format!("{}:{line}: {why}", path.display()))
    };
    let file = std::fs::File::open(&path)
        .map_err(|e| ServiceError::Invalid(format!("reading {}: {e}", path.display())))?;
    let mut lines = std::io::BufReader::new(file).lines().enumerate();
    let mut next = |what: &str| -> Result<(usize, serde_json::Value), ServiceError> {
        let (n, line) = lines.next().ok_or_else(|| {
            invalid(
                0,
                format!("the file ends before its {what}: the export was cut short"),
            )
        })?;
        let line = line.map_err(|e| invalid(n + 1, e.to_string()))?;
        let value = serde_json::from_str(&line)
            .map_err(|e| invalid(n + 1, format!("not a JSON line ({e})")))?;
        Ok((n + 1, value))
    };
    let (_, header) = next("header")?;
    if header["format"] != "kiln-export" || header["version"] != FORMAT_VERSION {
        return Err(invalid(
            1,
            format!("not a Kiln export of format version {FORMAT_VERSION}"),
        ));
    }
    let schema = db.schema_version().await?;
    if header["schema"] != schema {
        return Err(invalid(
            1,
            format!(
                "exported by a Kiln of schema {}, this one is schema {schema}: import with the same Kiln version that exported",
                header["schema"]
            ),
        ));
    }
    let (_, meta) = next("first-start record")?;
    let bootstrapped_at = meta["meta"]["bootstrapped_at"]
        .as_str()
        .map(ToOwned::to_owned);
    let mut rows = Vec::new();
    loop {
        let (n, line) = next("footer")?;
        if line["end"] == true {
            if line["rows"] != rows.len() {
                return Err(invalid(
                    n,
                    format!(
                        "the footer counts {} rows, the file has {}",
                        line["rows"],
                        rows.len()
                    ),
                ));
            }
            return Ok((rows, bootstrapped_at));
        }
        let row: ExportedRow = match (line["table"].as_str(), line["row"].as_object()) {
            (Some(table), Some(row)) => ExportedRow {
                table: table.to_owned(),
                row: row.clone(),
            },
            _ => return Err(invalid(n, "a row line has `table` and `row`".into())),
        };
        check_names(&row).map_err(|why| invalid(n, why))?;
        rows.push(row);
    }
}

/// Checks every stored blob the rows name against its digest and puts it in the store.
async fn store_blobs(
    storage: &Storage,
    dir: &Path,
    rows: &[ExportedRow],
) -> Result<(u64, u64), ServiceError> {
    let (mut blobs, mut bytes) = (0, 0);
    for row in rows.iter().filter(|r| r.table == "blobs") {
        if !row
            .row
            .get("collected_at_ms")
            .is_none_or(serde_json::Value::is_null)
        {
            continue; // its bytes were collected before the export
        }
        let digest: Sha256Digest = row.row["sha256"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e| ServiceError::Invalid(format!("a blob row: {e}")))?;
        let file = blob_path(dir, &digest);
        let (hashed, size) = hash_file(&file).await.map_err(|e| {
            ServiceError::Invalid(format!("blob {digest}: reading {}: {e}", file.display()))
        })?;
        if hashed != digest {
            return Err(ServiceError::Invalid(format!(
                "blob {} hashes to {hashed}: the export is damaged; export again",
                file.display()
            )));
        }
        storage.put_file(&digest, &file, size).await?;
        blobs += 1;
        bytes += size;
    }
    Ok((blobs, bytes))
}

async fn hash_file(path: &Path) -> std::io::Result<(Sha256Digest, u64)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        let hex = hex::encode(hasher.finalize());
        let digest = hex.parse().map_err(std::io::Error::other)?;
        Ok((digest, size))
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn empty() -> (tempfile::TempDir, Db, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!(
            "sqlite://{}/kiln.db?mode=rwc",
            dir.path().display()
        ))
        .await
        .unwrap();
        let url = url::Url::from_directory_path(dir.path().join("storage")).unwrap();
        std::fs::create_dir_all(dir.path().join("storage")).unwrap();
        let storage = Storage::from_url(url.as_str()).unwrap();
        (dir, db, storage)
    }

    /// Writes an export directory with `rows` (JSON row lines) and `blobs`.
    fn export(
        schema: i64,
        rows: &[String],
        footer: usize,
        blobs: &[(&str, &[u8])],
    ) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut text = format!(
            "{{\"format\":\"kiln-export\",\"version\":1,\"schema\":{schema}}}\n{{\"meta\":{{\"bootstrapped_at\":\"2026-01-01T00:00:00Z\"}}}}\n"
        );
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        text = format!("{text}{{\"end\":true,\"rows\":{footer}}}\n");
        std::fs::write(dir.path().join(METADATA_FILE), text).unwrap();
        for (name, bytes) in blobs {
            let path = dir.path().join(crate::api::blob_key(name));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        dir
    }

    #[tokio::test]
    async fn a_damaged_export_is_refused_before_any_row_is_written() {
        let (_keep, db, storage) = empty().await;
        let schema = db.schema_version().await.unwrap();
        let good = Sha256Digest::of(b"wheel bytes");
        let blob_row = format!(
            "{{\"table\":\"blobs\",\"row\":{{\"sha256\":\"{good}\",\"size\":11,\"created_at\":\"t\",\"collected_at_ms\":null}}}}"
        );
        let index_row = "{\"table\":\"indexes\",\"row\":{\"id\":7,\"namespace\":\"acme\",\"name\":\"x\",\"kind\":\"stage\",\"volatile\":0,\"promotion_only\":0,\"created_at\":\"t\",\"updated_at\":\"t\"}}".to_owned();
        let cases: Vec<(tempfile::TempDir, &str)> = vec![
            (
                export(
                    schema,
                    std::slice::from_ref(&blob_row),
                    2,
                    &[(good.as_str(), b"wheel bytes")],
                ),
                "footer counts",
            ),
            (
                export(
                    schema,
                    std::slice::from_ref(&blob_row),
                    1,
                    &[(good.as_str(), b"other bytes")],
                ),
                "hashes to",
            ),
            (
                export(schema, std::slice::from_ref(&blob_row), 1, &[]),
                "reading",
            ),
            (export(schema + 1, &[], 0, &[]), "schema"),
            (
                export(
                    schema,
                    &["{\"table\":\"sqlite_master\",\"row\":{}}".to_owned()],
                    1,
                    &[],
                ),
                "unknown table",
            ),
            (
                export(
                    schema,
                    &["{\"table\":\"indexes\",\"row\":{\"id; DROP\":1}}".to_owned()],
                    1,
                    &[],
                ),
                "not a column name",
            ),
        ];
        for (dir, reason) in cases {
            let err = import(&db, &storage, dir.path())
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(reason), "expected `{reason}`: {err}");
            assert!(
                db.is_empty().await.unwrap(),
                "nothing was written ({reason})"
            );
        }
        // A cut-off file (no footer) is refused too.
        let cut = export(schema, std::slice::from_ref(&index_row), 1, &[]);
        let path = cut.path().join(METADATA_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
        let err = import(&db, &storage, cut.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cut short"), "{err}");

        // A whole one goes in, once.
        let whole = export(
            schema,
            &[blob_row, index_row],
            2,
            &[(good.as_str(), b"wheel bytes")],
        );
        let done = import(&db, &storage, whole.path()).await.unwrap();
        assert_eq!((done.rows, done.blobs, done.bytes), (2, 1, 11));
        assert!(storage.exists(&good).await.unwrap());
        let err = import(&db, &storage, whole.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not empty"), "{err}");
    }
}
