//! The bookkeeping of one gRPC call, done when its response ends: the status of a gRPC call is
//! known only then (in the trailers, or in the headers of a trailers-only answer), and a
//! streamed `Read` lasts until its last message.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::Frame;
use tonic::Code;

use super::status::{http_equivalent, ERROR_KEY};
use crate::http::body::Body;
use crate::http::server::AppState;

/// What is recorded about a call.
pub struct Call {
    pub state: Arc<AppState>,
    pub peer: SocketAddr,
    pub path: String,
    pub label: &'static str,
    pub user: String,
    pub start: Instant,
    /// A write that stored a new blob (for the audit log).
    pub created: bool,
}

/// The grpc status and error code in a header or trailer map.
fn status_of(headers: &HeaderMap) -> Option<(Code, Option<String>)> {
    let code = headers.get("grpc-status")?;
    let code = Code::from_bytes(code.as_bytes());
    let error = headers.get(ERROR_KEY).and_then(|v| v.to_str().ok()).map(str::to_string);
    Some((code, error))
}

impl Call {
    /// Records a call that ended with `code`.
    pub fn finish(self, code: Code, error: Option<String>) {
        let status = http_equivalent(code);
        let elapsed = self.start.elapsed();
        self.state.metrics.request(self.label, "POST", status, elapsed);
        tracing::info!(
            target: "access",
            peer = %self.peer,
            method = "POST",
            path = %self.path,
            status,
            grpc_status = code as i32,
            route = self.label,
            ms = elapsed.as_secs_f64() * 1000.0,
        );
        // New blobs count as stores, as HTTP's 201 does.
        let audited = if self.created && status == 200 { 201 } else { status };
        let error = error.as_deref().map(|e| match e {
            // The audit log keys on the code; keep it to the static set it knows.
            "digest_mismatch" => "digest_mismatch",
            _ => "grpc_error",
        });
        crate::audit::after_request(
            &self.state.audit,
            &self.user,
            self.label,
            &http::Method::POST,
            &self.path,
            audited,
            error,
        );
    }

    /// Wraps a response so that the call is recorded when it ends.
    pub fn observe(self, resp: http::Response<Body>) -> http::Response<Body> {
        let (parts, body) = resp.into_parts();
        let early = status_of(&parts.headers);
        let body = Observed {
            inner: body,
            call: Some(self),
            status: early,
        };
        http::Response::from_parts(parts, http_body_util::BodyExt::boxed_unsync(body))
    }
}

/// A response body that records its call when it ends or is dropped.
struct Observed {
    inner: Body,
    call: Option<Call>,
    /// The status, once seen.
    status: Option<(Code, Option<String>)>,
}

impl Observed {
    fn done(&mut self) {
        if let Some(call) = self.call.take() {
            // A body that ends without a status was cut off: the client went away.
            let (code, error) = self.status.take().unwrap_or((Code::Cancelled, None));
            call.finish(code, error);
        }
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = frame.trailers_ref() {
                    if let Some(s) = status_of(t) {
                        this.status = Some(s);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.status.get_or_insert((Code::Internal, None));
                this.done();
            }
            Poll::Ready(None) => {
                this.status.get_or_insert((Code::Unknown, None));
                this.done();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.done();
    }
}
