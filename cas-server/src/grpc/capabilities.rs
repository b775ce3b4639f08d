//! `Capabilities.GetCapabilities`: what this cache offers (no remote execution).

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::build::bazel::semver::SemVer;
use re::capabilities_server::Capabilities;
use re::compressor::Value as Compressor;
use re::digest_function::Value as DigestFunction;
use tonic::{Request, Response, Status};

use super::MAX_BATCH_TOTAL;

/// The service.
pub struct CapabilitiesService {
    /// The largest blob the store accepts (`max_blob_size`).
    pub max_blob_size: u64,
}

fn version(major: i32, minor: i32) -> Option<SemVer> {
    Some(SemVer {
        major,
        minor,
        patch: 0,
        prerelease: String::new(),
    })
}

impl CapabilitiesService {
    /// What every `GetCapabilities` answers.
    pub fn capabilities(&self) -> re::ServerCapabilities {
        re::ServerCapabilities {
            cache_capabilities: Some(re::CacheCapabilities {
                digest_functions: vec![DigestFunction::Sha256 as i32, DigestFunction::Blake3 as i32],
                action_cache_update_capabilities: Some(re::ActionCacheUpdateCapabilities { update_enabled: true }),
                cache_priority_capabilities: None,
                max_batch_total_size_bytes: MAX_BATCH_TOTAL as i64,
                symlink_absolute_path_strategy: re::symlink_absolute_path_strategy::Value::Allowed as i32,
                supported_compressors: vec![Compressor::Zstd as i32],
                supported_batch_update_compressors: vec![Compressor::Zstd as i32],
                max_cas_blob_size_bytes: self.max_blob_size as i64,
                split_blob_support: false,
                splice_blob_support: false,
                ..Default::default()
            }),
            execution_capabilities: None,
            deprecated_api_version: None,
            low_api_version: version(2, 0),
            high_api_version: version(2, 3),
        }
    }
}

#[tonic::async_trait]
impl Capabilities for CapabilitiesService {
    async fn get_capabilities(
        &self,
        _request: Request<re::GetCapabilitiesRequest>,
    ) -> Result<Response<re::ServerCapabilities>, Status> {
        Ok(Response::new(self.capabilities()))
    }
}
