//! Request routing and handlers of `reprovm serve` (the table is in the module above). Errors are
//! JSON `{"error": code, "message": text}` as on cas-server.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use reprovm_sdk::audit::EventKind;
use serde_json::{json, Value};

use super::State;
use cas_server::auth::{Access, AuthError, Role};

type Resp = Response<Full<Bytes>>;

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(v).expect("json"))))
        .expect("response")
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Resp {
    json_resp(status, &json!({"error": code, "message": message.into()}))
}

/// What a request needs: read for GET, write for a run, admin for clearing the cache and reading
/// the config; health, the UI and metrics as on cas-server.
fn access(method: &Method, path: &str) -> Access {
    match (method, path) {
        (_, "/health") | (_, "/openapi.yaml") => Access::Public,
        (_, p) if cas_server::http::swagger::asset(p).is_some() => Access::Public,
        (_, "/metrics") | (_, "/metrics/json") => Access::Metrics,
        (_, "/config") | (&Method::DELETE, "/cache") => Access::Role(Role::Admin),
        (&Method::POST, "/tasks") => Access::Role(Role::Write),
        (&Method::GET, _) | (&Method::HEAD, _) => Access::Role(Role::Read),
        _ => Access::Role(Role::Write),
    }
}

/// Routes a request; returns the route label (for metrics) and the response.
pub async fn dispatch(st: &Arc<State>, req: Request<Incoming>) -> (&'static str, Resp) {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let user = match st.auth.check(access(&method, &path), req.headers()) {
        Ok(principal) => principal.name,
        Err(e) => {
            let who = token_name_hint(req.headers());
            st.audit
                .as_user(&who)
                .record(EventKind::AuthFailure, &path, method.as_str(), false, e.to_string());
            tracing::warn!(target: "security", %method, %path, reason = %e, "request refused");
            let (status, code) = match e {
                AuthError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
                AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            };
            let mut r = error(status, code, e.to_string());
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    "Bearer realm=\"reprovm\"".parse().expect("header"),
                );
            }
            return ("auth", r);
        }
    };
    if let Some((ctype, bytes)) = cas_server::http::swagger::asset(&path) {
        if method != Method::GET && method != Method::HEAD {
            return ("swagger", not_allowed("GET, HEAD"));
        }
        let r = Response::builder()
            .header(header::CONTENT_TYPE, ctype)
            .body(Full::new(Bytes::from_static(bytes)))
            .expect("response");
        return ("swagger", r);
    }
    let ro = [Method::GET, Method::HEAD];
    macro_rules! only {
        ($label:expr, $allowed:expr, $body:expr) => {{
            if !$allowed.contains(&method) {
                let allow: Vec<&str> = $allowed.iter().map(Method::as_str).collect();
                return ($label, not_allowed(&allow.join(", ")));
            }
            ($label, $body)
        }};
    }
    match path.as_str() {
        "/health" => only!("health", ro, health(st)),
        "/metrics" => only!("metrics", ro, metrics(st)),
        "/metrics/json" => only!("metrics_json", ro, {
            crate::metrics::refresh_process();
            json_resp(StatusCode::OK, &st.metrics.render_json())
        }),
        "/config" => only!("config", ro, json_resp(StatusCode::OK, &st.config)),
        "/tasks" if method == Method::POST => ("tasks", post_tasks(st, req, &user).await),
        "/tasks" => only!("tasks", [Method::GET, Method::HEAD, Method::POST], list_tasks(st)),
        "/cache" if method == Method::DELETE => ("cache", delete_cache(st, &user).await),
        "/cache" => only!(
            "cache",
            [Method::GET, Method::HEAD, Method::DELETE],
            cache_stats(st).await
        ),
        p if p.starts_with("/tasks/") => only!("task", ro, task(st, &p["/tasks/".len()..])),
        p if p.starts_with("/runs/") => only!("run", ro, run(st, &p["/runs/".len()..])),
        _ => (
            "unknown",
            error(StatusCode::NOT_FOUND, "no_route", format!("no route for {path}")),
        ),
    }
}

/// The token's name is unknown when it is refused; say which scheme was tried.
fn token_name_hint(h: &HeaderMap) -> String {
    match h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        Some(v) => format!(
            "{}-credentials",
            v.split(' ').next().unwrap_or("unknown").to_ascii_lowercase()
        ),
        None => "anonymous".into(),
    }
}

fn not_allowed(allow: &str) -> Resp {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("allowed: {allow}"),
    );
    r.headers_mut().insert(header::ALLOW, allow.parse().expect("header"));
    r
}

fn health(st: &State) -> Resp {
    json_resp(
        StatusCode::OK,
        &json!({"status": "ok", "tasks": st.graph.tasks().len(), "store": st.store.describe}),
    )
}

fn metrics(st: &State) -> Resp {
    crate::metrics::refresh_process();
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(Full::new(Bytes::from(st.metrics.render())))
        .expect("response")
}

fn list_tasks(st: &State) -> Resp {
    let states = st.tasks.lock().expect("tasks");
    let list: Vec<Value> = st
        .graph
        .tasks()
        .iter()
        .map(|t| {
            let s = &states[&t.name];
            json!({"name": t.name, "deps": t.deps, "status": s.status, "last_run": s.run_id})
        })
        .collect();
    json_resp(StatusCode::OK, &json!({ "tasks": list }))
}

fn task(st: &State, name: &str) -> Resp {
    let Some(t) = st.graph.tasks().iter().find(|t| t.name == name) else {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no task named {name:?}"));
    };
    let s = st.tasks.lock().expect("tasks")[name].clone();
    json_resp(
        StatusCode::OK,
        &json!({
            "name": t.name,
            "cmd": t.cmd,
            "inputs": t.inputs,
            "declared_outputs": t.outputs,
            "deps": t.deps,
            "status": s.status,
            "key": s.key,
            "last_run": s.run_id,
            "reason": s.reason,
            "duration_ms": s.duration_ms,
            "outputs": s.outputs,
        }),
    )
}

fn run(st: &State, id: &str) -> Resp {
    let runs = st.runs.lock().expect("runs");
    match id.parse::<u64>().ok().and_then(|id| runs.iter().find(|r| r.id == id)) {
        Some(r) => json_resp(StatusCode::OK, &serde_json::to_value(r).expect("json")),
        None => error(StatusCode::NOT_FOUND, "not_found", format!("no run {id:?}")),
    }
}

async fn post_tasks(st: &Arc<State>, req: Request<Incoming>, user: &str) -> Resp {
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_body", e.to_string()),
    };
    let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_json", e.to_string()),
        }
    };
    let Some(obj) = v.as_object() else {
        return error(StatusCode::BAD_REQUEST, "bad_json", "expected an object");
    };
    let targets: Vec<String> = match obj.get("targets") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect()
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_json",
                "`targets` must be an array of task names",
            )
        }
    };
    let force = match obj.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return error(StatusCode::BAD_REQUEST, "bad_json", "`force` must be a boolean"),
    };
    let selected = match st.graph.select(&targets) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, "unknown_target", e.to_string()),
    };
    let id = st.submit(targets, selected, force, user);
    json_resp(
        StatusCode::ACCEPTED,
        &json!({"run_id": id, "status": "queued", "url": format!("/runs/{id}")}),
    )
}

async fn cache_stats(st: &State) -> Resp {
    let Some(local) = &st.store.local else {
        return json_resp(StatusCode::OK, &json!({"store": st.store.describe, "local": false}));
    };
    let c = local.counters();
    json_resp(
        StatusCode::OK,
        &json!({
            "store": st.store.describe,
            "local": true,
            "blobs": c.blobs.load(Ordering::Relaxed),
            "bytes": c.logical_bytes.load(Ordering::Relaxed),
            "disk_bytes": local.disk_bytes(),
        }),
    )
}

/// Deletes every blob of the local store (waiting for a run in progress to finish first).
async fn delete_cache(st: &State, user: &str) -> Resp {
    let Some(local) = st.store.local.clone() else {
        return error(
            StatusCode::CONFLICT,
            "remote_store",
            format!("the store is {}; clear it with its own tools", st.store.describe),
        );
    };
    let _no_run = st.run_lock.lock().await;
    let done = tokio::task::spawn_blocking(move || clear_store(&local)).await;
    match done {
        Ok(Ok(n)) => {
            st.audit.as_user(user).record(
                EventKind::BlobDelete,
                "cache",
                "clear",
                true,
                format!("{n} blobs deleted"),
            );
            // The workspace state vouches for results that were in the store.
            let _ = std::fs::remove_file(&st.state_file);
            let mut tasks = st.tasks.lock().expect("tasks");
            for t in tasks.values_mut() {
                t.outputs.clear();
            }
            json_resp(StatusCode::OK, &json!({"deleted_blobs": n}))
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// Deletes every blob (action results stay; their outputs are then missing, so the tasks rerun).
fn clear_store(local: &cas_server::RocksStore) -> Result<u64, reprovm_sdk::CasError> {
    let digests: Vec<reprovm_sdk::Digest> = local
        .list_blobs()
        .map(|r| r.map(|(d, _)| d))
        .collect::<Result<_, _>>()?;
    let mut n = 0;
    for d in &digests {
        n += u64::from(local.delete_blob(d)?);
    }
    Ok(n)
}
