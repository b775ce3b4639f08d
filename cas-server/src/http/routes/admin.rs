//! `/v1/admin/backups`: online store backups while the server serves.
//!
//! - `POST` (optional JSON body `{"to": "DIR"}`): backs up the live store into
//!   `DIR`, else `backup_dir` from the config, else `cas-backups` beside the
//!   data dir; 201 with the new backup's info.
//! - `GET` (optional `?from=DIR`): the backups in that directory.
//!
//! Admin only: the auth layer gates `/v1/admin/*`.

use std::path::PathBuf;

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::HandlerResult;
use crate::backup::bucket::{self, Bucket};
use crate::backup::{self, BackupDir, BackupError};
use crate::http::body;
use crate::http::error::ApiError;
use crate::http::server::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    /// Backup directory.
    to: Option<String>,
}

fn api_error(e: BackupError) -> ApiError {
    match e {
        BackupError::Unsupported { .. } => ApiError::bad_request("unsupported_target", e.to_string()),
        BackupError::NoBackupDir(_) | BackupError::Empty(_) | BackupError::NoSuchBackup { .. } => {
            ApiError::new(404, "not_found", e.to_string())
        }
        e => {
            tracing::error!(error = %e, "backup failed");
            ApiError::new(500, "backup_failed", e.to_string())
        }
    }
}

fn target(state: &AppState, given: Option<String>) -> Result<PathBuf, ApiError> {
    match given {
        Some(t) => backup::parse_target(&t).map_err(api_error),
        None => Ok(state
            .config
            .backup_dir
            .clone()
            .unwrap_or_else(|| backup::default_dir(&state.config.data_dir))),
    }
}

/// For a bucket URL target: its client and local mirror, filled from the bucket.
async fn bucket_mirror(state: &AppState, given: &Option<String>) -> Result<Option<(Bucket, PathBuf)>, ApiError> {
    let target = given.clone().or_else(|| {
        state
            .config
            .backup_dir
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
    });
    let Some(url) = target.filter(|t| bucket::is_bucket_url(t)) else {
        return Ok(None);
    };
    let fail = |e: std::io::Error| ApiError::new(502, "bucket_error", format!("backup bucket {url}: {e}"));
    let b = Bucket::open(&url).map_err(|e| ApiError::bad_request("unsupported_target", e.to_string()))?;
    let mirror = bucket::mirror_dir(&url);
    std::fs::create_dir_all(&mirror).map_err(fail)?;
    b.pull(&mirror).await.map_err(fail)?;
    Ok(Some((b, mirror)))
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> HandlerResult {
    Ok(Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::json(value))
        .expect("valid"))
}

/// `GET|POST /v1/admin/backups`.
pub async fn backups(state: &AppState, req: Request<Incoming>) -> HandlerResult {
    if req.method() == Method::POST {
        create(state, req).await
    } else {
        list(state, req).await
    }
}

async fn create(state: &AppState, req: Request<Incoming>) -> HandlerResult {
    let raw = body::collect_limited(req.into_body(), 64 << 10).await?;
    let request: CreateRequest = if raw.iter().all(u8::is_ascii_whitespace) {
        CreateRequest::default()
    } else {
        serde_json::from_slice(&raw).map_err(|e| ApiError::bad_request("bad_json", format!("backup request: {e}")))?
    };
    let mirror = bucket_mirror(state, &request.to).await?;
    let dir = match &mirror {
        Some((_, m)) => m.clone(),
        None => target(state, request.to)?,
    };
    let local = state.local.clone();
    let started = std::time::Instant::now();
    // The engine copies files for as long as the store is large: off the async workers.
    let info = tokio::task::spawn_blocking(move || {
        let bdir = BackupDir::open(&dir, true)?;
        let info = bdir.backup_store(&local)?;
        Ok::<_, BackupError>((info, dir))
    })
    .await
    .map_err(|e| ApiError::new(500, "backup_failed", format!("backup task failed: {e}")))?;
    let (info, dir) = info.map_err(api_error)?;
    if let Some((b, m)) = &mirror {
        b.push(m)
            .await
            .map_err(|e| ApiError::new(502, "bucket_error", format!("copying the backup to the bucket: {e}")))?;
    }
    tracing::info!(id = info.id, dir = %dir.display(), files = info.num_files, "online backup created");
    json_response(
        StatusCode::CREATED,
        &json!({
            "id": info.id,
            "timestamp": info.timestamp,
            "size": info.size,
            "num_files": info.num_files,
            "has_manifest": info.has_manifest,
            "dir": dir,
            "duration_ms": started.elapsed().as_millis() as u64,
        }),
    )
}

async fn list(state: &AppState, req: Request<Incoming>) -> HandlerResult {
    let from = req
        .uri()
        .query()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "from"))
        .map(|(_, v)| v.into_owned());
    let mirror = bucket_mirror(state, &from).await?;
    let dir = match mirror {
        Some((_, m)) => m,
        None => target(state, from)?,
    };
    let backups = tokio::task::spawn_blocking(move || BackupDir::open(&dir, false)?.list().map(|l| (l, dir)))
        .await
        .map_err(|e| ApiError::new(500, "backup_failed", format!("backup task failed: {e}")))?;
    let (backups, dir) = backups.map_err(api_error)?;
    json_response(StatusCode::OK, &json!({"dir": dir, "backups": backups}))
}
