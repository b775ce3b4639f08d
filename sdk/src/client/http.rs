//! `HttpCas`: a [`Cas`] backed by a remote cas-server over HTTP/1.1.
//!
//! Bodies stream both ways. Requests whose bodies are in memory are retried on
//! connection errors and 5xx answers (except 507); streaming uploads are sent once.

use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::RetryPolicy;
use crate::cas::{Blob, BlobInfo, ByteStream, Cas, PutOutcome, RefCondition, RefValue};
use crate::digest::{Digest, HashKind};
use crate::error::{CasError, Result};
use crate::proto::{self, ByteRange, ErrorBody, MissingRequest, MissingResponse, RefList};
use crate::verify::verified_stream;

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Builds an [`HttpCas`].
#[derive(Clone, Debug)]
pub struct HttpCasBuilder {
    url: String,
    token: Option<String>,
    retry: RetryPolicy,
    connect_timeout: Duration,
    ca_file: Option<std::path::PathBuf>,
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// TLS roots: the system's, plus a configured CA (for servers with private certificates).
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let bad = |e: String| CasError::InvalidInput(format!("CA file {}: {e}", path.display()));
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
            roots
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CasError::InvalidInput(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl HttpCasBuilder {
    /// Trusts the CA certificates of a PEM file (besides the system's) for `https://` URLs.
    pub fn with_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets the bearer token (overrides one in the URL's user-info).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Validates the URL and builds the client.
    pub fn build(self) -> Result<HttpCas> {
        let url =
            url::Url::parse(&self.url).map_err(|e| CasError::InvalidInput(format!("bad URL {:?}: {e}", self.url)))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(CasError::InvalidInput(format!(
                "unsupported scheme {:?} in {:?}: expected http(s)://host:port",
                url.scheme(),
                self.url
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| CasError::InvalidInput(format!("no host in {:?}", self.url)))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let token = self
            .token
            .or_else(|| url.password().map(|p| p.to_string()))
            .or_else(|| (!url.username().is_empty()).then(|| url.username().to_string()));
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let base = format!("{}://{host}:{port}{}", url.scheme(), url.path().trim_end_matches('/'));
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(self.ca_file.as_deref())?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(HttpCas {
            client,
            base,
            token,
            retry: self.retry,
        })
    }
}

/// A [`Cas`] talking to a cas-server.
#[derive(Clone, Debug)]
pub struct HttpCas {
    client: Client<Connector, Body>,
    base: String,
    token: Option<String>,
    retry: RetryPolicy,
}

impl HttpCas {
    /// A builder for `url` (`http://host:port[/prefix]`, optionally `http://user:token@…`).
    pub fn builder(url: impl Into<String>) -> HttpCasBuilder {
        HttpCasBuilder {
            url: url.into(),
            token: None,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }

    /// A client for `url` with default settings.
    pub fn new(url: impl Into<String>) -> Result<Self> {
        Self::builder(url).build()
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn blob_path(digest: &Digest) -> String {
        match digest.kind() {
            HashKind::Blake3 => format!("/v1/blobs/{digest}"),
            HashKind::Sha256 => format!("/cas/{digest}"),
        }
    }

    fn ac_path(key: &Digest) -> String {
        match key.kind() {
            HashKind::Blake3 => format!("/v1/ac/{key}"),
            HashKind::Sha256 => format!("/ac/{key}"),
        }
    }

    fn request(&self, method: Method, path: &str, body: Body) -> Request<Body> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .body(body)
            .expect("valid request parts");
        if let Some(token) = &self.token {
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
                req.headers_mut().insert(header::AUTHORIZATION, v);
            }
        }
        req
    }

    /// Sends a request with an in-memory body, retrying transient failures.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        headers: &[(header::HeaderName, String)],
    ) -> Result<Response<Incoming>> {
        let mut attempt = 1;
        loop {
            let mut req = self.request(method.clone(), path, full(body.clone()));
            for (name, value) in headers {
                req.headers_mut().insert(
                    name,
                    HeaderValue::from_str(value).map_err(|e| CasError::InvalidInput(e.to_string()))?,
                );
            }
            let result = self
                .client
                .request(req)
                .await
                .map_err(|e| CasError::Unavailable(format!("{} {path}: {}", self.base, error_chain(&e))));
            let retry = match &result {
                Err(_) => true,
                Ok(resp) => resp.status().is_server_error() && resp.status() != StatusCode::INSUFFICIENT_STORAGE,
            };
            if !retry || attempt >= self.retry.max_attempts {
                return result;
            }
            tokio::time::sleep(self.retry.backoff(attempt + 1)).await;
            attempt += 1;
        }
    }

    async fn send_empty(&self, method: Method, path: &str) -> Result<Response<Incoming>> {
        self.send(method, path, Bytes::new(), &[]).await
    }
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

async fn read_body(resp: Response<Incoming>) -> Result<Bytes> {
    Ok(resp
        .into_body()
        .collect()
        .await
        .map_err(|e| CasError::Unavailable(format!("reading response: {e}")))?
        .to_bytes())
}

/// Turns a non-success answer into the matching [`CasError`].
async fn error_of(resp: Response<Incoming>, what: &str) -> CasError {
    let status = resp.status().as_u16();
    let body = read_body(resp).await.unwrap_or_default();
    let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
    let (code, message) = match parsed {
        Some(b) => (b.error, b.message),
        None => (String::new(), String::from_utf8_lossy(&body).into_owned()),
    };
    match status {
        404 => CasError::not_found(what),
        412 => CasError::PreconditionFailed { name: what.to_string() },
        413 => CasError::TooLarge { size: 0, limit: 0 },
        416 => CasError::RangeNotSatisfiable { size: 0 },
        401 | 403 => CasError::Unauthorized {
            missing: status == 401,
            message,
        },
        507 => CasError::InsufficientStorage(message),
        _ => CasError::Remote { status, code, message },
    }
}

fn header_u64(resp: &Response<Incoming>, name: header::HeaderName) -> Option<u64> {
    resp.headers().get(name)?.to_str().ok()?.parse().ok()
}

fn etag_of(resp: &Response<Incoming>) -> String {
    resp.headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_matches('"')
        .to_string()
}

fn cond_headers(cond: &RefCondition) -> Vec<(header::HeaderName, String)> {
    match cond {
        RefCondition::Always => vec![],
        RefCondition::IfMatch(etag) => vec![(header::IF_MATCH, format!("\"{etag}\""))],
        RefCondition::IfAbsent => vec![(header::IF_NONE_MATCH, "*".to_string())],
    }
}

#[async_trait::async_trait]
impl Cas for HttpCas {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let mut missing = Vec::new();
        let (sha, blake): (Vec<Digest>, Vec<Digest>) = digests.iter().partition(|d| d.kind() == HashKind::Sha256);
        for chunk in blake.chunks(proto::MAX_MISSING_DIGESTS) {
            let body = serde_json::to_vec(&MissingRequest {
                digests: chunk.to_vec(),
            })
            .expect("serializable");
            let resp = self
                .send(
                    Method::POST,
                    "/v1/blobs:missing",
                    body.into(),
                    &[(header::CONTENT_TYPE, "application/json".into())],
                )
                .await?;
            if !resp.status().is_success() {
                return Err(error_of(resp, "blobs:missing").await);
            }
            let parsed: MissingResponse =
                serde_json::from_slice(&read_body(resp).await?).map_err(|e| CasError::Remote {
                    status: 200,
                    code: "bad_response".into(),
                    message: e.to_string(),
                })?;
            missing.extend(parsed.missing);
        }
        for d in sha {
            if self.stat(&d).await?.is_none() {
                missing.push(d);
            }
        }
        Ok(missing)
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>> {
        let resp = self.send_empty(Method::HEAD, &Self::blob_path(digest)).await?;
        match resp.status() {
            StatusCode::OK => Ok(Some(BlobInfo {
                size: header_u64(&resp, header::CONTENT_LENGTH).unwrap_or(0),
            })),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(error_of(resp, &format!("blob {digest}")).await),
        }
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Blob> {
        let headers: Vec<_> = range.iter().map(|r| (header::RANGE, r.to_header())).collect();
        let resp = self
            .send(Method::GET, &Self::blob_path(digest), Bytes::new(), &headers)
            .await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(error_of(resp, &format!("blob {digest}")).await);
        }
        let len = header_u64(&resp, header::CONTENT_LENGTH);
        let (size, range) = if status == StatusCode::PARTIAL_CONTENT {
            // Content-Range: bytes a-b/size
            let cr = resp
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let parsed = cr.strip_prefix("bytes ").and_then(|s| {
                let (ab, size) = s.split_once('/')?;
                let (a, b) = ab.split_once('-')?;
                Some((
                    size.parse::<u64>().ok()?,
                    a.parse::<u64>().ok()?,
                    b.parse::<u64>().ok()?,
                ))
            });
            let (size, a, b) = parsed.ok_or_else(|| CasError::Remote {
                status: 206,
                code: "bad_response".into(),
                message: format!("bad Content-Range {cr:?}"),
            })?;
            (size, a..b + 1)
        } else {
            let size = len.unwrap_or(0);
            (size, 0..size)
        };
        let stream: ByteStream = Box::pin(
            resp.into_body()
                .into_data_stream()
                .map_err(|e| std::io::Error::other(format!("reading blob: {e}"))),
        );
        // A whole blob is verified as it streams: a corrupt server cannot hand us wrong bytes.
        let body = if status == StatusCode::OK {
            verified_stream(*digest, Some(size), stream)
        } else {
            stream
        };
        Ok(Blob { size, range, body })
    }

    async fn put(&self, digest: &Digest, size: Option<u64>, body: ByteStream) -> Result<PutOutcome> {
        let stream_body = StreamBody::new(body.map_ok(Frame::data));
        let mut req = self.request(
            Method::PUT,
            &Self::blob_path(digest),
            BodyExt::boxed_unsync(stream_body),
        );
        if let Some(size) = size {
            req.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        }
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| CasError::Unavailable(format!("PUT blob {digest}: {}", error_chain(&e))))?;
        match resp.status() {
            StatusCode::CREATED => Ok(PutOutcome::Created),
            StatusCode::OK => Ok(PutOutcome::Existed),
            StatusCode::BAD_REQUEST => {
                let err = error_of(resp, &format!("blob {digest}")).await;
                match &err {
                    CasError::Remote { code, message, .. } if code == "digest_mismatch" => {
                        Err(CasError::Corrupt(format!("server refused blob {digest}: {message}")))
                    }
                    _ => Err(err),
                }
            }
            _ => Err(error_of(resp, &format!("blob {digest}")).await),
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let resp = self.send_empty(Method::DELETE, &Self::blob_path(digest)).await?;
        match resp.status() {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(error_of(resp, &format!("blob {digest}")).await),
        }
    }

    async fn ac_get(&self, key: &Digest) -> Result<Option<Bytes>> {
        let resp = self.send_empty(Method::GET, &Self::ac_path(key)).await?;
        match resp.status() {
            StatusCode::OK => Ok(Some(read_body(resp).await?)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(error_of(resp, &format!("action {key}")).await),
        }
    }

    async fn ac_put(&self, key: &Digest, value: Bytes) -> Result<()> {
        let resp = self.send(Method::PUT, &Self::ac_path(key), value, &[]).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(error_of(resp, &format!("action {key}")).await)
        }
    }

    async fn ref_get(&self, name: &str) -> Result<Option<RefValue>> {
        let resp = self.send_empty(Method::GET, &format!("/v1/refs/{name}")).await?;
        match resp.status() {
            StatusCode::OK => {
                let etag = etag_of(&resp);
                Ok(Some(RefValue {
                    value: read_body(resp).await?,
                    etag,
                }))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(error_of(resp, &format!("ref {name}")).await),
        }
    }

    async fn ref_put(&self, name: &str, value: Bytes, cond: RefCondition) -> Result<String> {
        let resp = self
            .send(Method::PUT, &format!("/v1/refs/{name}"), value, &cond_headers(&cond))
            .await?;
        if resp.status().is_success() {
            Ok(etag_of(&resp))
        } else {
            Err(error_of(resp, name).await)
        }
    }

    async fn ref_delete(&self, name: &str, cond: RefCondition) -> Result<bool> {
        let resp = self
            .send(
                Method::DELETE,
                &format!("/v1/refs/{name}"),
                Bytes::new(),
                &cond_headers(&cond),
            )
            .await?;
        match resp.status() {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(error_of(resp, name).await),
        }
    }

    async fn ref_list(&self, prefix: &str) -> Result<Vec<String>> {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("prefix", prefix)
            .finish();
        let resp = self.send_empty(Method::GET, &format!("/v1/refs?{query}")).await?;
        if !resp.status().is_success() {
            return Err(error_of(resp, "refs").await);
        }
        let list: RefList = serde_json::from_slice(&read_body(resp).await?).map_err(|e| CasError::Remote {
            status: 200,
            code: "bad_response".into(),
            message: e.to_string(),
        })?;
        Ok(list.refs)
    }
}
