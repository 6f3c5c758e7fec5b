//! `POST /{ns}/{name}/`: the legacy upload API, as twine and `uv publish` send it.
//!
//! Authentication and the index's own rules are checked from the headers, before a byte
//! of the body is read, so a refused upload costs the client one round trip, not a
//! gigabyte. The multipart body is then parsed with explicit limits and handed, spooled
//! and hashed, to [`publish`](crate::service::publish).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt};

use super::error::ApiError;
use super::extract::IndexPath;
use crate::app::AppState;
use crate::config::UploadLimits;
use crate::service::ServiceError;
use crate::service::auth::Caller;
use crate::service::publish::{self, Published, SINGLE_FIELDS, UploadForm, spool};

/// Largest text field (a long description can be big, but not this big).
const MAX_TEXT_FIELD: u64 = 4 * 1024 * 1024;
/// Room for all the text fields around the file.
const FORM_OVERHEAD: u64 = 32 * 1024 * 1024;

/// Why the server stopped reading an upload body.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("{0}")]
    Read(axum::Error),
    #[error("the upload sent no data for {0:?}; cut off (`--upload-idle-timeout`)")]
    Idle(Duration),
    #[error("the upload took longer than {0:?}; cut off (`--upload-timeout`)")]
    Total(Duration),
    #[error(
        "the server is shutting down and this upload stopped sending; nothing was stored, retry it"
    )]
    ShuttingDown,
}

/// How long an upload may pause once the server is shutting down before it is cut off
/// (an upload that keeps sending finishes).
const SHUTDOWN_IDLE: Duration = Duration::from_secs(2);

/// The request body, cut off when it pauses longer than the idle timeout or runs past
/// the total one: a slow body cannot hold a connection and a temp file forever.
fn timed_body(
    body: Body,
    limits: UploadLimits,
    stopping: tokio_util::sync::CancellationToken,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, BodyError>> {
    let deadline = tokio::time::Instant::now() + limits.total_timeout;
    futures_util::stream::unfold(
        (body.into_data_stream(), false),
        move |(mut stream, failed)| {
            let stopping = stopping.clone();
            async move {
                if failed {
                    return None;
                }
                let now = tokio::time::Instant::now();
                let mut wait = limits
                    .idle_timeout
                    .min(deadline.saturating_duration_since(now));
                if stopping.is_cancelled() {
                    wait = wait.min(SHUTDOWN_IDLE);
                }
                let next = {
                    let read = tokio::time::timeout(wait, stream.next());
                    tokio::pin!(read);
                    tokio::select! {
                        got = &mut read => got,
                        // Shutting down while waiting: a little longer, then cut off.
                        () = stopping.cancelled(), if !stopping.is_cancelled() => {
                            tokio::time::timeout(SHUTDOWN_IDLE.min(wait), stream.next()).await
                        }
                    }
                };
                match next {
                    Ok(Some(item)) => Some((item.map_err(BodyError::Read), (stream, false))),
                    Ok(None) => None,
                    Err(_) if stopping.is_cancelled() => {
                        Some((Err(BodyError::ShuttingDown), (stream, true)))
                    }
                    Err(_) if tokio::time::Instant::now() >= deadline => {
                        Some((Err(BodyError::Total(limits.total_timeout)), (stream, true)))
                    }
                    Err(_) => Some((Err(BodyError::Idle(limits.idle_timeout)), (stream, true))),
                }
            }
        },
    )
}

fn multipart_error(err: multer::Error, limit: u64) -> ServiceError {
    match err {
        multer::Error::StreamReadFailed(cause) => body_read_failed(cause),
        multer::Error::FieldSizeExceeded { field_name, .. }
            if field_name.as_deref() == Some("content") =>
        {
            ServiceError::TooLarge(format!(
                "the uploaded file is larger than this server's upload limit of {limit} bytes (`--max-upload-size`)"
            ))
        }
        multer::Error::FieldSizeExceeded { field_name, .. } => ServiceError::TooLarge(format!(
            "form field `{}` is larger than the limit of {MAX_TEXT_FIELD} bytes for text fields",
            field_name.unwrap_or_default()
        )),
        multer::Error::StreamSizeExceeded { .. } => ServiceError::TooLarge(format!(
            "the upload body is over this server's limit ({limit} bytes for the file, `--max-upload-size`)"
        )),
        multer::Error::IncompleteStream => ServiceError::Invalid(
            "malformed multipart upload body: it ended without its closing boundary — truncated, or the boundary in `Content-Type` is not the one the body uses".into(),
        ),
        multer::Error::IncompleteFieldData { field_name } => ServiceError::Invalid(format!(
            "malformed multipart upload body: the `{}` part ended without a boundary after it (truncated?)",
            field_name.unwrap_or_default().escape_debug()
        )),
        multer::Error::IncompleteHeaders => ServiceError::Invalid(
            "malformed multipart upload body: a part's headers never end (no blank line after them)".into(),
        ),
        multer::Error::ReadHeaderFailed(cause) => ServiceError::Invalid(format!(
            "malformed multipart upload body: a part's headers cannot be parsed ({cause}); header lines must be `Name: value` ending in CRLF"
        )),
        multer::Error::DecodeHeaderName { name, .. } => ServiceError::Invalid(format!(
            "malformed multipart upload body: part header name `{}` is invalid",
            name.escape_debug()
        )),
        multer::Error::DecodeHeaderValue { .. } => ServiceError::Invalid(
            "malformed multipart upload body: a part header's value is not valid (control characters or a bare CR/LF in it?)".into(),
        ),
        other => ServiceError::Invalid(format!("malformed multipart upload body: {other}")),
    }
}

/// The `content` part's filename, or why there is none usable: multer answers `None`
/// alike for a missing `filename=`, an RFC 5987 `filename*=` and a name that is not
/// UTF-8, and each needs its own fix.
fn content_filename(field: &multer::Field<'_>) -> Result<String, ServiceError> {
    if let Some(name) = field.file_name().filter(|n| !n.is_empty()) {
        return Ok(name.to_owned());
    }
    let Some(disposition) = field.headers().get(header::CONTENT_DISPOSITION) else {
        return Err(ServiceError::Invalid(
            "the `content` part has no `Content-Disposition` header naming the file".into(),
        ));
    };
    let Ok(text) = std::str::from_utf8(disposition.as_bytes()) else {
        return Err(ServiceError::Invalid(
            "the `content` part's filename is not UTF-8; distribution filenames are ASCII".into(),
        ));
    };
    let lowered = text.to_ascii_lowercase();
    let unclosed = lowered
        .split_once("filename=\"")
        .is_some_and(|(_, rest)| !rest.contains('"'));
    Err(ServiceError::Invalid(if unclosed {
        "the `content` part's `filename=\"…` is never closed: a CR or LF inside the name ends the header line".into()
    } else if lowered.contains("filename*=") {
        "the `content` part names its file only with RFC 5987 `filename*=`; send `filename=\"…\"` (as twine and `uv publish` do)".into()
    } else if lowered.contains("filename=") {
        "the `content` part's `filename=` is empty or unreadable; send the distribution's filename"
            .into()
    } else {
        "the `content` part has no `filename=`; send the distribution's filename (as twine and `uv publish` do)".into()
    }))
}

/// Reads an upload form from a multipart body: text fields (each named field at most
/// once where it must be single), and the `content` file spooled to `tmp_dir` while it is
/// hashed. Limits: `max_upload` for the file, [`MAX_TEXT_FIELD`] per text field, and
/// `max_fields` fields. Plain Rust over a byte stream, so it can be fuzzed.
pub async fn read_form<S, E>(
    body: S,
    boundary: String,
    max_upload: u64,
    max_fields: usize,
    tmp_dir: &std::path::Path,
    lease_id: Option<String>,
) -> Result<UploadForm, ServiceError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(max_upload.saturating_add(FORM_OVERHEAD))
            .per_field(MAX_TEXT_FIELD)
            // Slack above the limit lets `spool` refuse first, naming the file.
            .for_field("content", max_upload.saturating_add(64 * 1024)),
    );
    // multer stops reading at the closing boundary; the rest of the body is drained
    // below, through the same stream, so a body that ends before its declared length
    // is refused before anything is stored.
    let body = SharedStream::new(body);
    let mut multipart = multer::Multipart::with_constraints(body.clone(), boundary, constraints);
    let mut fields = 0usize;
    let mut form = UploadForm {
        lease_id,
        ..UploadForm::default()
    };
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, max_upload))?
    {
        fields += 1;
        if fields > max_fields {
            return Err(ServiceError::TooLarge(format!(
                "the upload form has more than {max_fields} fields (`--max-form-fields`)"
            )));
        }
        let name = field.name().unwrap_or_default().to_owned();
        if name == "content" {
            if form.content.is_some() {
                return Err(ServiceError::Invalid(
                    "the upload form has two `content` files".into(),
                ));
            }
            let filename = content_filename(&field)?;
            let stream = field.map_err(|e| multipart_error(e, max_upload));
            form.content = Some(spool(filename, stream, tmp_dir, max_upload).await?);
        } else {
            let value = field
                .text()
                .await
                .map_err(|e| multipart_error(e, max_upload))?;
            if SINGLE_FIELDS.contains(&name.as_str())
                && form.fields.insert(name.clone(), value).is_some()
            {
                return Err(ServiceError::Invalid(format!(
                    "form field `{name}` appears more than once"
                )));
            }
        }
    }
    drop(multipart);
    drain_epilogue(body).await?;
    Ok(form)
}

/// Most bytes read after a form's closing boundary (MIME allows an epilogue; no client
/// sends one, so a large one is a confused or hostile client). multer reads whatever has
/// already arrived, within the whole-body limit; this bounds what comes after that.
const MAX_EPILOGUE: usize = 64 * 1024;

/// Reads what is left of the body after the closing boundary, to its end: an error here
/// means the body ended before the length it announced (or stalled), and the upload is
/// refused although its form was complete.
async fn drain_epilogue<S, E>(mut body: SharedStream<S>) -> Result<(), ServiceError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let mut epilogue = 0usize;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => {
                epilogue += bytes.len();
                if epilogue > MAX_EPILOGUE {
                    return Err(ServiceError::Invalid(format!(
                        "the upload body goes on for more than {MAX_EPILOGUE} bytes after the form's closing boundary"
                    )));
                }
            }
            Err(err) => return Err(body_read_failed(err.into())),
        }
    }
    Ok(())
}

/// Why reading the body failed: one of our timeouts (408), or the body ending before the
/// length it announced (400).
fn body_read_failed(cause: Box<dyn std::error::Error + Send + Sync>) -> ServiceError {
    match cause.downcast::<BodyError>() {
        Ok(stopped) if matches!(*stopped, BodyError::ShuttingDown) => {
            ServiceError::Unavailable(stopped.to_string())
        }
        Ok(timeout) if !matches!(*timeout, BodyError::Read(_)) => {
            ServiceError::Timeout(timeout.to_string())
        }
        Ok(read) => body_ended_early(&read),
        Err(other) => body_ended_early(&other),
    }
}

fn body_ended_early(cause: &dyn std::fmt::Display) -> ServiceError {
    ServiceError::Invalid(format!(
        "the upload body ended before the length it announced (`Content-Length`); nothing was stored: {cause}"
    ))
}

/// A stream that two owners poll in turn: multer, which needs a `'static` stream and
/// stops at the closing boundary, and then [`drain_epilogue`].
/// Fused: multer may already have seen the end, and the body stream must not be polled
/// past it.
struct SharedStream<S>(
    std::sync::Arc<std::sync::Mutex<std::pin::Pin<Box<futures_util::stream::Fuse<S>>>>>,
);

impl<S: futures_util::Stream> SharedStream<S> {
    fn new(stream: S) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(Box::pin(
            stream.fuse(),
        ))))
    }
}

impl<S> Clone for SharedStream<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S: futures_util::Stream> futures_util::Stream for SharedStream<S> {
    type Item = S::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        // Never held across an await: each poll locks, polls and unlocks.
        let mut inner = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.as_mut().poll_next(cx)
    }
}

/// `POST /{ns}/{name}/`
pub async fn upload_file(
    State(state): State<AppState>,
    IndexPath(index_name): IndexPath,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let target = publish::open_upload(&state.db, &caller, &index_name).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "uploads must be `multipart/form-data` with a boundary, as twine and `uv publish` send them",
        )
    })?;
    let lease_id = headers
        .get(crate::api::LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let form = read_form(
        timed_body(body, state.config.upload_limits, state.stopping.clone()),
        boundary,
        state.config.max_upload_bytes,
        state.config.upload_limits.max_form_fields,
        &state.config.tmp_dir(),
        lease_id,
    )
    .await?;
    let published = publish::publish(
        &state.db,
        &state.storage,
        state.config.archive_limits,
        &target,
        form,
    )
    .await?;
    let (result, file) = match published {
        Published::Created(file) => ("created", file),
        Published::AlreadyPresent(file) => ("already-present", file),
    };
    Ok((
        StatusCode::OK,
        Json(crate::api::UploadAnswer {
            result: result.into(),
            index: index_name.to_string(),
            url: format!("/{index_name}/+f/{}/{}", file.sha256, file.filename),
            filename: file.filename,
            sha256: file.sha256.to_string(),
        }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn read(body: Vec<u8>, split: usize) -> Result<UploadForm, ServiceError> {
        let body = bytes::Bytes::from(body);
        let split = split.min(body.len());
        read_chunks(vec![Ok(body.slice(..split)), Ok(body.slice(split..))])
    }

    fn read_chunks(
        chunks: Vec<Result<bytes::Bytes, std::io::Error>>,
    ) -> Result<UploadForm, ServiceError> {
        let tmp = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // `unfold` panics when polled after its end, as the server's body stream does.
        let stream = futures_util::stream::unfold(chunks.into_iter(), |mut rest| async move {
            rest.next().map(|chunk| (chunk, rest))
        });
        runtime.block_on(read_form(stream, "B".into(), 4096, 8, tmp.path(), None))
    }

    fn part(name: &str, filename: Option<&str>, value: &[u8]) -> Vec<u8> {
        let mut out =
            format!("--B\r\nContent-Disposition: form-data; name=\"{name}\"").into_bytes();
        if let Some(f) = filename {
            out.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
        out
    }

    fn complete_form() -> Vec<u8> {
        let mut body = part("name", None, b"x");
        body.extend(part("content", Some("x-1.0.tar.gz"), b"abc"));
        body.extend_from_slice(b"--B--\r\n");
        body
    }

    #[test]
    fn a_complete_form_in_a_body_that_then_breaks_is_refused() {
        let cut = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "end of file before message length reached",
        );
        let err = read_chunks(vec![Ok(complete_form().into()), Err(cut)]).unwrap_err();
        assert!(
            matches!(&err, ServiceError::Invalid(m) if m.contains("ended before the length it announced")),
            "{err:?}"
        );
    }

    #[test]
    fn an_epilogue_after_the_closing_boundary_is_accepted() {
        let small = read_chunks(vec![
            Ok(complete_form().into()),
            Ok(bytes::Bytes::from_static(b"trailing words\r\n")),
        ]);
        assert!(small.is_ok(), "{small:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn any_body_is_answered_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..600), split in 0usize..600) {
            if let Ok(form) = read(body, split) {
                let _ = publish::validate_form(&form);
            }
        }

        #[test]
        fn well_formed_forms_read_back_whatever_the_chunking(
            name in "[a-z]{1,10}",
            content in proptest::collection::vec(any::<u8>(), 0..2000),
            split in 0usize..3000,
        ) {
            let mut body = part("name", None, name.as_bytes());
            body.extend(part("content", Some("x-1.0.tar.gz"), &content));
            body.extend_from_slice(b"--B--\r\n");
            let form = read(body, split).unwrap();
            prop_assert_eq!(form.fields.get("name"), Some(&name));
            let spooled = form.content.unwrap();
            prop_assert_eq!(spooled.size, content.len() as u64);
            prop_assert_eq!(spooled.sha256, crate::domain::Sha256Digest::of(&content));
        }

        #[test]
        fn limits_hold_for_any_field_count(extra in 0usize..20) {
            let mut body = Vec::new();
            for i in 0..extra {
                body.extend(part("classifiers", None, format!("c{i}").as_bytes()));
            }
            body.extend_from_slice(b"--B--\r\n");
            let result = read(body, 7);
            prop_assert_eq!(result.is_ok(), extra <= 8, "{} fields", extra);
        }
    }
}
