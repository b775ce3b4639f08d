//! `ActionCache`: `GetActionResult` and `UpdateActionResult`, on the store's action-cache
//! entries (the ones bazel's HTTP `/ac/{sha256}` reads and writes, serialized `ActionResult`s).
//!
//! `GetActionResult` answers `NOT_FOUND` when any blob the result refers to is missing (output
//! files, stdout, stderr, output directory trees and every file in them), as bazel-remote and
//! bb-storage do: a client never gets a hit whose outputs it cannot download.

use std::sync::Arc;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;
use re::action_cache_server::ActionCache;
use reprovm_sdk::digest::HashKind;
use reprovm_sdk::proto::MAX_AC_VALUE;
use tonic::{Request, Response, Status};

use super::digest::{self, Sized};
use super::status::{from_cas, invalid, with_code};
use super::tree::{tree_file_digests, TreeError};
use crate::http::server::AppState;
use crate::metrics::Metrics;

/// The service.
pub struct AcService {
    /// The server's state.
    pub state: Arc<AppState>,
}

/// Why a stored result is not served.
enum Incomplete {
    /// A blob it refers to is missing.
    Missing(Sized),
    /// The stored value is not an `ActionResult` (e.g. a ccache entry under `/ac/`).
    NotAResult,
}

impl AcService {
    /// Every blob `result` refers to is in the store (`Ok(None)`), or the first missing one.
    async fn check_complete(&self, kind: HashKind, result: &re::ActionResult) -> Result<Option<Incomplete>, Status> {
        let Ok((mut wanted, trees)) = referenced(kind, result) else {
            return Ok(Some(Incomplete::NotAResult));
        };
        for t in trees {
            match tree_file_digests(&*self.state.store, kind, &t).await {
                Ok(Some(files)) => {
                    wanted.push(t);
                    wanted.extend(files);
                }
                Ok(None) => return Ok(Some(Incomplete::Missing(t))),
                Err(TreeError::Store(e)) => return Err(from_cas(e)),
                Err(TreeError::Malformed { .. }) => return Ok(Some(Incomplete::NotAResult)),
            }
        }
        wanted.retain(|d| !d.is_empty_blob());
        let mut digests: Vec<_> = wanted.iter().map(|d| d.digest).collect();
        // Trees repeat files: ask for each blob once.
        digests.sort_unstable();
        digests.dedup();
        let missing = self.state.store.find_missing(&digests).await.map_err(from_cas)?;
        Ok(missing.first().map(|m| {
            let size = wanted.iter().find(|w| w.digest == *m).map_or(0, |w| w.size);
            Incomplete::Missing(Sized { digest: *m, size })
        }))
    }
}

/// The blobs a result names directly, and its output directories' trees.
fn referenced(kind: HashKind, result: &re::ActionResult) -> Result<(Vec<Sized>, Vec<Sized>), Status> {
    let mut blobs = Vec::new();
    for f in &result.output_files {
        blobs.push(digest::required(kind, f.digest.as_ref(), "output file digest")?);
    }
    for d in [&result.stdout_digest, &result.stderr_digest].into_iter().flatten() {
        blobs.push(digest::parse(kind, d)?);
    }
    let mut trees = Vec::new();
    for d in &result.output_directories {
        if let Some(r) = &d.root_directory_digest {
            blobs.push(digest::parse(kind, r)?);
        }
        if let Some(t) = &d.tree_digest {
            trees.push(digest::parse(kind, t)?);
        }
    }
    Ok((blobs, trees))
}

#[tonic::async_trait]
impl ActionCache for AcService {
    async fn get_action_result(
        &self,
        request: Request<re::GetActionResultRequest>,
    ) -> Result<Response<re::ActionResult>, Status> {
        let req = request.into_inner();
        let kind = digest::kind(req.digest_function)?;
        let action = digest::required(kind, req.action_digest.as_ref(), "action_digest")?;
        let miss = |why: String| {
            Metrics::lookup("ac", false);
            with_code(tonic::Code::NotFound, "not_found", why)
        };
        let Some(value) = self.state.store.ac_get(&action.digest).await.map_err(from_cas)? else {
            return Err(miss(format!("no action result for {}", action.display())));
        };
        let Ok(result) = re::ActionResult::decode(value.clone()) else {
            return Err(miss(format!(
                "the entry for {} is not an ActionResult",
                action.display()
            )));
        };
        match self.check_complete(kind, &result).await? {
            None => {}
            Some(Incomplete::Missing(d)) => {
                return Err(miss(format!(
                    "the action result for {} refers to blob {}, which is not in the CAS",
                    action.display(),
                    d.display()
                )))
            }
            Some(Incomplete::NotAResult) => {
                return Err(miss(format!(
                    "the entry for {} is not a valid ActionResult",
                    action.display()
                )))
            }
        }
        Metrics::lookup("ac", true);
        Metrics::bytes_out(value.len() as u64);
        Ok(Response::new(result))
    }

    async fn update_action_result(
        &self,
        request: Request<re::UpdateActionResultRequest>,
    ) -> Result<Response<re::ActionResult>, Status> {
        let req = request.into_inner();
        let kind = digest::kind(req.digest_function)?;
        let action = digest::required(kind, req.action_digest.as_ref(), "action_digest")?;
        let result = req
            .action_result
            .ok_or_else(|| invalid("invalid_action_result", "the request has no action_result"))?;
        let value = result.encode_to_vec();
        if value.len() > MAX_AC_VALUE {
            return Err(invalid(
                "too_large",
                format!("an action result of {} bytes; the limit is {MAX_AC_VALUE}", value.len()),
            ));
        }
        Metrics::bytes_in(value.len() as u64);
        self.state
            .store
            .ac_put(&action.digest, value.into())
            .await
            .map_err(from_cas)?;
        Ok(Response::new(result))
    }
}
