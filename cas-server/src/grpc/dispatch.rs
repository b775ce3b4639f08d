//! One gRPC call from the accept loop to a service: method table, credentials, rate limits,
//! then the service; metrics, the access log and the audit log when the answer ends
//! ([`super::observe`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream::byte_stream_server::ByteStreamServer;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use re::action_cache_server::ActionCacheServer;
use re::capabilities_server::CapabilitiesServer;
use re::content_addressable_storage_server::ContentAddressableStorageServer;
use tonic::codegen::Service as _;
use tonic::{Code, Status};

use super::ac::AcService;
use super::bytestream::{ByteStreamService, Created};
use super::capabilities::CapabilitiesService;
use super::cas::CasService;
use super::observe::Call;
use super::table::{self, Service};
use super::uploads::Uploads;
use super::MAX_MESSAGE;
use crate::auth::{AuthError, Role};
use crate::http::body::Body;
use crate::http::server::AppState;

/// Whether a request is a gRPC call: `content-type: application/grpc`, optionally followed by
/// `+proto` or parameters (not `application/grpc-web`, which this server does not speak).
pub fn is_grpc<B>(req: &Request<B>) -> bool {
    let Some(ct) = req.headers().get(http::header::CONTENT_TYPE) else {
        return false;
    };
    let ct = ct.as_bytes();
    ct.strip_prefix(b"application/grpc")
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'+' || rest[0] == b';')
}

/// The four services, built once per server and shared by every connection.
#[derive(Clone)]
pub struct Grpc {
    state: Arc<AppState>,
    capabilities: CapabilitiesServer<CapabilitiesService>,
    cas: ContentAddressableStorageServer<CasService>,
    ac: ActionCacheServer<AcService>,
    bytestream: ByteStreamServer<ByteStreamService>,
}

fn to_body(resp: Response<tonic::body::Body>) -> Response<Body> {
    resp.map(|b| b.map_err(std::io::Error::other).boxed_unsync())
}

impl Grpc {
    /// The services on `state`'s store.
    pub fn new(state: Arc<AppState>) -> Self {
        let uploads = Arc::new(Uploads::new(state.limits.body_idle));
        let max_blob_size = state.config.max_blob_size.0;
        Self {
            capabilities: CapabilitiesServer::new(CapabilitiesService { max_blob_size }),
            cas: ContentAddressableStorageServer::new(CasService { state: state.clone() })
                .max_decoding_message_size(MAX_MESSAGE),
            ac: ActionCacheServer::new(AcService { state: state.clone() }).max_decoding_message_size(MAX_MESSAGE),
            bytestream: ByteStreamServer::new(ByteStreamService {
                state: state.clone(),
                uploads,
            })
            .max_decoding_message_size(MAX_MESSAGE),
            state,
        }
    }

    /// Answers one call.
    pub async fn call(&self, req: Request<Incoming>, peer: SocketAddr, cert_role: Option<Role>) -> Response<Body> {
        let start = Instant::now();
        let path = req.uri().path().to_string();
        let method = table::resolve(&path);
        let row = method.unwrap_or(&table::UNKNOWN);
        let state = &self.state;
        let principal = state.auth.check_with_cert(row.access, req.headers(), cert_role);
        let user = principal.as_ref().map_or("anonymous", |p| p.name.as_str()).to_string();
        let mut call = Call {
            state: state.clone(),
            peer,
            path,
            label: row.label,
            user,
            start,
            created: false,
        };
        let token = principal
            .as_ref()
            .ok()
            .filter(|p| p.name != "anonymous")
            .map(|p| p.name.as_str());
        if let Err(wait) = state.limits.check_rate(peer.ip(), token) {
            let secs = wait.as_secs() + 1;
            call.label = "rate_limited";
            let s = super::status::with_code(
                Code::ResourceExhausted,
                "rate_limited",
                format!("too many requests; retry in {secs} s"),
            );
            return call.observe(to_body(s.into_http()));
        }
        if let Err(e) = principal {
            tracing::warn!(target: "security", path = %call.path, reason = %e, "gRPC call refused");
            let s = match e {
                AuthError::Unauthenticated(m) => super::status::with_code(Code::Unauthenticated, "unauthorized", m),
                AuthError::Forbidden(m) => super::status::with_code(Code::PermissionDenied, "forbidden", m),
            };
            return call.observe(to_body(s.into_http()));
        }
        if req.version() != http::Version::HTTP_2 {
            let s = Status::invalid_argument("gRPC needs HTTP/2 (h2c with prior knowledge, or TLS with ALPN h2)");
            return call.observe(to_body(s.into_http()));
        }
        let Some(method) = method else {
            let s = Status::unimplemented(format!("no method {:?} on this server", call.path));
            return call.observe(to_body(s.into_http()));
        };
        let resp = match method.service {
            Service::Capabilities => self.capabilities.clone().call(req).await,
            Service::Cas => self.cas.clone().call(req).await,
            Service::ActionCache => self.ac.clone().call(req).await,
            Service::ByteStream => self.bytestream.clone().call(req).await,
        };
        let resp = match resp {
            Ok(r) => r,
            Err(never) => match never {},
        };
        call.created = resp.extensions().get::<Created>().is_some();
        call.observe(to_body(resp))
    }
}
