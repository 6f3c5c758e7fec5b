//! Stage results and release status: `POST /+api/v1/results`,
//! `GET /+api/v1/results/{sha256}` and `GET /+api/v1/releases/{ns}/{name}/{project}/{version}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::ReleasePath;
use super::indexes::ApiJson;
use crate::api::{ArtifactResults, FileStatus, ReleaseFile, ReleaseStatus, StageReport};
use crate::app::AppState;
use crate::service::auth::Caller;
use crate::service::results;

/// `POST /+api/v1/results`
pub async fn report_result(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(report): ApiJson<StageReport>,
) -> Result<Response, ApiError> {
    let stored = results::report(state.promoter(), &caller, &report).await?;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

/// `GET /+api/v1/results/{sha256}`
pub async fn show_results(
    State(state): State<AppState>,
    caller: Caller,
    Path(sha256): Path<String>,
) -> Result<Response, ApiError> {
    let history = results::history(&state.db, &caller, &sha256).await?;
    Ok(Json(ArtifactResults {
        sha256,
        latest: results::latest_per_stage(&history),
        history,
    })
    .into_response())
}

/// `GET /+api/v1/releases/{ns}/{name}/{project}/{version}`
pub async fn show_release(
    State(state): State<AppState>,
    ReleasePath(index_name, release): ReleasePath,
    caller: Caller,
) -> Result<Response, ApiError> {
    let (build, verdicts) =
        results::release_status(&state.db, &caller, &index_name, &release).await?;
    let build = super::builds::view(
        &index_name,
        (&release, None),
        build,
        state.config.build_lease_ttl,
    );
    Ok(Json(ReleaseStatus {
        build,
        files: verdicts
            .into_iter()
            .map(|v| FileStatus {
                file: ReleaseFile::of(&v.index, &v.file),
                index: v.index.clone(),
                stages: v.latest,
            })
            .collect(),
    })
    .into_response())
}
