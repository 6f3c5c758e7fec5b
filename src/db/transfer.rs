//! Export and import of every row, backend to backend (`kiln export`, `kiln import`).
//!
//! The format is JSON lines: a header naming the format version and the schema (the last
//! migration applied), then one line per row (`{"table": …, "row": {column: value}}`, a
//! value an integer, a string or null), then a footer with the row count, so a cut-off
//! file is refused. Every table holds integers and text only, so a row travels as JSON
//! without loss. The export reads in one transaction (a snapshot: on PostgreSQL
//! `REPEATABLE READ`, on SQLite a read transaction in WAL mode), so it is consistent
//! while the server runs. An import goes into an empty database, in one transaction.

use futures_util::TryStreamExt as _;
use serde_json::{Map, Value};
use sqlx::{Column as _, Row as _};

use super::{Backend, Db, DbError};

/// The export format's version.
pub const FORMAT_VERSION: i64 = 1;

/// Every table an export carries, in an order that satisfies foreign keys, with the
/// columns it is ordered by and whether its `id` is an identity column. (The fleet
/// leases are not carried: they belong to running replicas.)
const TABLES: &[(&str, &str, bool)] = &[
    ("indexes", "id", true),
    ("index_bases", "index_id, position", false),
    ("blobs", "sha256", false),
    ("tokens", "id", true),
    ("builds", "id", true),
    ("files", "id", true),
    ("stage_results", "id", true),
    ("promotions", "id", true),
    ("events", "id", true),
    ("mirror_projects", "index_id, project", false),
    ("mirror_files", "index_id, filename", false),
    ("webhooks", "id", true),
    ("webhook_deliveries", "id", true),
    ("trash", "id", true),
    ("trash_files", "id", false),
];

/// One row of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedRow {
    /// Its table.
    pub table: String,
    /// Its columns.
    pub row: Map<String, Value>,
}

fn row_json(row: &sqlx::any::AnyRow, table: &str) -> Result<Map<String, Value>, DbError> {
    let mut map = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let value = if let Ok(n) = row.try_get::<Option<i64>, _>(i) {
            n.map_or(Value::Null, Value::from)
        } else if let Ok(text) = row.try_get::<Option<String>, _>(i) {
            text.map_or(Value::Null, Value::from)
        } else {
            return Err(DbError::Corrupt {
                table: "export",
                column: "value",
                value: format!("{table}.{}", column.name()),
                reason: "neither an integer nor text".into(),
            });
        };
        map.insert(column.name().to_owned(), value);
    }
    Ok(map)
}

impl Db {
    /// The last migration applied: the schema an export describes.
    pub async fn schema_version(&self) -> Result<i64, DbError> {
        Ok(
            sqlx::query_scalar("SELECT CAST(MAX(version) AS BIGINT) FROM _sqlx_migrations")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Streams the export's lines (header, rows, footer) through a bounded channel, read
    /// in one snapshot transaction; an error ends the stream with it.
    #[must_use]
    pub fn export_lines(&self) -> tokio::sync::mpsc::Receiver<Result<String, DbError>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(256);
        let db = self.clone();
        tokio::spawn(async move {
            let outcome = async {
                let schema = db.schema_version().await?;
                let mut tx = db.pool.begin().await?;
                if db.backend == Backend::Postgres {
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                        .execute(&mut *tx)
                        .await?;
                }
                let header = serde_json::json!({
                    "format": "kiln-export",
                    "version": FORMAT_VERSION,
                    "schema": schema,
                });
                if sender.send(Ok(header.to_string())).await.is_err() {
                    return Ok(());
                }
                let mut count: u64 = 0;
                let meta: Option<Option<String>> =
                    sqlx::query_scalar("SELECT bootstrapped_at FROM kiln_meta WHERE id = 1")
                        .fetch_optional(&mut *tx)
                        .await?;
                let meta = serde_json::json!({ "meta": { "bootstrapped_at": meta.flatten() } });
                if sender.send(Ok(meta.to_string())).await.is_err() {
                    return Ok(());
                }
                for (table, order, _) in TABLES {
                    let sql = format!("SELECT * FROM {table} ORDER BY {order}");
                    let mut rows = sqlx::query(&sql).fetch(&mut *tx);
                    while let Some(row) = rows.try_next().await? {
                        let line =
                            serde_json::json!({ "table": table, "row": row_json(&row, table)? });
                        count += 1;
                        if sender.send(Ok(line.to_string())).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                let footer = serde_json::json!({ "end": true, "rows": count });
                let _ = sender.send(Ok(footer.to_string())).await;
                Ok::<(), DbError>(())
            }
            .await;
            if let Err(err) = outcome {
                let _ = sender.send(Err(err)).await;
            }
        });
        receiver
    }

    /// True when the database holds no index and no token: nothing an import could
    /// collide with (a server started on it would have made `root/master`).
    pub async fn is_empty(&self) -> Result<bool, DbError> {
        let indexes: i64 = sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM indexes")
            .fetch_one(&self.pool)
            .await?;
        let tokens: i64 = sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM tokens")
            .fetch_one(&self.pool)
            .await?;
        Ok(indexes == 0 && tokens == 0)
    }

    /// Inserts every row in one transaction (the caller checked the database is empty and
    /// the rows come from a whole export of this schema), then moves each identity
    /// column's sequence past the imported ids (PostgreSQL) and records the first start.
    pub async fn import_rows(
        &self,
        rows: &[ExportedRow],
        bootstrapped_at: Option<&str>,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        for (table, _, _) in TABLES {
            for exported in rows.iter().filter(|r| r.table == *table) {
                let columns: Vec<(&String, &Value)> =
                    exported.row.iter().filter(|(_, v)| !v.is_null()).collect();
                let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
                let sql = format!(
                    "INSERT INTO {table} ({}) VALUES ({})",
                    names.join(", "),
                    super::placeholders(1, names.len())
                );
                let mut query = sqlx::query(&sql);
                for (name, value) in &columns {
                    query = match value {
                        Value::Number(n) => query.bind(n.as_i64().ok_or_else(|| bad(table, name))?),
                        Value::String(text) => query.bind(text.as_str()),
                        _ => return Err(bad(table, name)),
                    };
                }
                query.execute(&mut *tx).await?;
            }
        }
        if self.backend == Backend::Postgres {
            for (table, _, identity) in TABLES {
                if *identity {
                    sqlx::query(&format!(
                        "SELECT CAST(setval(pg_get_serial_sequence('{table}', 'id'), \
                         (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false) AS BIGINT)"
                    ))
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        sqlx::query("UPDATE kiln_meta SET bootstrapped_at = $1 WHERE id = 1")
            .bind(bootstrapped_at)
            .execute(&mut *tx)
            .await?;
        tx.changed(super::changes::Change::Indexes);
        tx.changed(super::changes::Change::Tokens);
        tx.changed(super::changes::Change::Webhooks);
        tx.commit().await
    }
}

fn bad(table: &str, column: &str) -> DbError {
    DbError::Corrupt {
        table: "import",
        column: "value",
        value: format!("{table}.{column}"),
        reason: "an import value is an integer, a string or null".into(),
    }
}

/// Checks that an export's table and column names are ones this schema has a use for
/// (they are spliced into SQL): a known table, and lowercase identifiers.
pub fn check_names(row: &ExportedRow) -> Result<(), String> {
    if !TABLES.iter().any(|(t, _, _)| *t == row.table) {
        return Err(format!("unknown table `{}`", row.table.escape_debug()));
    }
    for column in row.row.keys() {
        if column.is_empty()
            || !column
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!(
                "column `{}` of `{}` is not a column name",
                column.escape_debug(),
                row.table
            ));
        }
    }
    Ok(())
}
