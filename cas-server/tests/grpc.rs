//! The REAPI v2 cache services over gRPC against the real binary, with a tonic client: every
//! method's edge cases with their exact status codes, the same store as HTTP, auth, metrics.

mod common;

use common::grpc::{authed, b3, proto as re, read_name, sha, write, write_name, Clients};
use common::{req, Server};
use prost::Message;
use tonic::Code;

async fn start() -> (tempfile::TempDir, Server, Clients) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    let c = Clients::new(&s).await;
    (dir, s, c)
}

fn update(d: &re::Digest, data: &[u8]) -> re::batch_update_blobs_request::Request {
    re::batch_update_blobs_request::Request {
        digest: Some(d.clone()),
        data: data.to_vec(),
        compressor: 0,
    }
}

#[tokio::test]
async fn capabilities_name_the_cache() {
    let (_dir, _s, mut c) = start().await;
    let caps = c
        .caps
        .get_capabilities(re::GetCapabilitiesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let cache = caps.cache_capabilities.unwrap();
    use re::digest_function::Value as F;
    assert_eq!(cache.digest_functions, vec![F::Sha256 as i32, F::Blake3 as i32]);
    assert!(cache.action_cache_update_capabilities.unwrap().update_enabled);
    assert_eq!(cache.max_batch_total_size_bytes, 4 << 20);
    assert_eq!(cache.supported_compressors, vec![re::compressor::Value::Zstd as i32]);
    assert!(caps.execution_capabilities.is_none());
    assert_eq!(caps.low_api_version.unwrap().major, 2);
}

#[tokio::test]
async fn cas_batches_find_missing_and_share_the_store_with_http() {
    let (_dir, s, mut c) = start().await;
    let (a, b) = (&b"alpha over grpc"[..], &b"beta over grpc"[..]);
    let (da, db) = (sha(a), sha(b));
    let empty = sha(b"");

    // Nothing is there but the empty blob, which a server always has.
    let missing = |ds: Vec<re::Digest>| re::FindMissingBlobsRequest {
        blob_digests: ds,
        ..Default::default()
    };
    let m = c
        .cas
        .find_missing_blobs(missing(vec![da.clone(), db.clone(), empty.clone()]))
        .await
        .unwrap();
    assert_eq!(m.into_inner().missing_blob_digests, vec![da.clone(), db.clone()]);

    // One good blob, one whose bytes do not hash to its digest, one with the wrong size.
    let wrong_size = re::Digest {
        size_bytes: 99,
        ..sha(b"sized")
    };
    let resp = c
        .cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests: vec![update(&da, a), update(&db, b"not beta"), update(&wrong_size, b"sized")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let codes: Vec<i32> = resp.responses.iter().map(|r| r.status.as_ref().unwrap().code).collect();
    assert_eq!(
        codes,
        vec![0, Code::InvalidArgument as i32, Code::InvalidArgument as i32]
    );
    assert_eq!(resp.responses[0].digest.as_ref(), Some(&da));

    // The blob written over gRPC is bazel's /cas/{sha256} over HTTP, and the reverse.
    let (st, _, body) = req(&s, "GET", &format!("/cas/{}", da.hash), &[], "").await;
    assert_eq!((st, &body[..]), (200, a));
    let (st, _, _) = req(&s, "PUT", &format!("/cas/{}", db.hash), &[], b).await;
    assert_eq!(st, 201);
    let m = c
        .cas
        .find_missing_blobs(missing(vec![da.clone(), db.clone()]))
        .await
        .unwrap();
    assert!(m.into_inner().missing_blob_digests.is_empty());

    // BatchRead: present, absent (per-blob NOT_FOUND), wrong size (NOT_FOUND), the empty blob.
    let absent = sha(b"never stored");
    let wrong = re::Digest {
        size_bytes: 1,
        ..da.clone()
    };
    let read = c
        .cas
        .batch_read_blobs(re::BatchReadBlobsRequest {
            digests: vec![da.clone(), absent, wrong, empty, db.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(i32, Vec<u8>)> = read
        .responses
        .iter()
        .map(|r| (r.status.as_ref().unwrap().code, r.data.clone()))
        .collect();
    let nf = Code::NotFound as i32;
    assert_eq!(
        got,
        vec![
            (0, a.to_vec()),
            (nf, vec![]),
            (nf, vec![]),
            (0, vec![]),
            (0, b.to_vec())
        ]
    );

    // Whole-call errors: a malformed digest, too much in one batch, an unknown digest function.
    let bad = re::Digest {
        hash: "ABC".into(),
        size_bytes: 1,
    };
    let e = c.cas.find_missing_blobs(missing(vec![bad])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let big = vec![7u8; 3 << 20];
    let e = c
        .cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests: vec![update(&sha(&big), &big), update(&sha(&big[1..]), &big[1..])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let huge = re::Digest {
        size_bytes: 5 << 20,
        ..sha(b"x")
    };
    let e = c
        .cas
        .batch_read_blobs(re::BatchReadBlobsRequest {
            digests: vec![huge],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = c
        .cas
        .find_missing_blobs(re::FindMissingBlobsRequest {
            digest_function: re::digest_function::Value::Md5 as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn zstd_batches_and_blake3_digests() {
    let (_dir, s, mut c) = start().await;
    let data = b"compressible ".repeat(1000);
    let z = zstd::bulk::compress(&data, 3).unwrap();
    let resp = c
        .cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests: vec![re::batch_update_blobs_request::Request {
                digest: Some(sha(&data)),
                data: z,
                compressor: re::compressor::Value::Zstd as i32,
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.responses[0].status.as_ref().unwrap().code, 0);
    let (st, _, body) = req(&s, "GET", &format!("/cas/{}", sha(&data).hash), &[], "").await;
    assert_eq!((st, body.len()), (200, data.len()));

    // BLAKE3 is the native hash: a gRPC BLAKE3 blob is /v1/blobs/{blake3}.
    let native = b"native blake3 blob";
    let resp = c
        .cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests: vec![update(&b3(native), native)],
            digest_function: re::digest_function::Value::Blake3 as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.responses[0].status.as_ref().unwrap().code, 0);
    let (st, _, body) = req(&s, "GET", &format!("/v1/blobs/{}", b3(native).hash), &[], "").await;
    assert_eq!((st, &body[..]), (200, &native[..]));
    // The same hash read as SHA-256 names another blob.
    let m = c
        .cas
        .find_missing_blobs(re::FindMissingBlobsRequest {
            blob_digests: vec![b3(native)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(m.into_inner().missing_blob_digests.len(), 1);
}

fn dir_msg(files: &[(&str, &re::Digest)], dirs: &[(&str, &re::Digest)]) -> re::Directory {
    re::Directory {
        files: files
            .iter()
            .map(|(n, d)| re::FileNode {
                name: n.to_string(),
                digest: Some((*d).clone()),
                ..Default::default()
            })
            .collect(),
        directories: dirs
            .iter()
            .map(|(n, d)| re::DirectoryNode {
                name: n.to_string(),
                digest: Some((*d).clone()),
            })
            .collect(),
        ..Default::default()
    }
}

async fn put_blobs(c: &mut Clients, blobs: &[Vec<u8>]) {
    let requests = blobs.iter().map(|b| update(&sha(b), b)).collect();
    let r = c
        .cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.responses.iter().all(|r| r.status.as_ref().unwrap().code == 0));
}

async fn tree(
    c: &mut Clients,
    root: &re::Digest,
    page_size: i32,
    token: &str,
) -> Result<Vec<(Vec<re::Directory>, String)>, tonic::Status> {
    let mut s = c
        .cas
        .get_tree(re::GetTreeRequest {
            root_digest: Some(root.clone()),
            page_size,
            page_token: token.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await? {
        out.push((m.directories, m.next_page_token));
    }
    Ok(out)
}

#[tokio::test]
async fn get_tree_walks_pages_and_skips_missing_parts() {
    let (_dir, _s, mut c) = start().await;
    // root -> a -> leaf, root -> b -> leaf (shared), root -> gone (never uploaded).
    let file = sha(b"file");
    let leaf = dir_msg(&[("f", &file)], &[]).encode_to_vec();
    let a = dir_msg(&[], &[("leaf", &sha(&leaf))]).encode_to_vec();
    let b = dir_msg(&[("g", &file)], &[("leaf", &sha(&leaf))]).encode_to_vec();
    let gone = sha(b"not a directory that exists");
    let root = dir_msg(&[], &[("a", &sha(&a)), ("b", &sha(&b)), ("gone", &gone)]).encode_to_vec();
    put_blobs(&mut c, &[leaf.clone(), a.clone(), b.clone(), root.clone()]).await;

    let all = tree(&mut c, &sha(&root), 0, "").await.unwrap();
    let dirs: Vec<re::Directory> = all.iter().flat_map(|(d, _)| d.clone()).collect();
    assert_eq!(dirs.len(), 4, "root, a, b, leaf once; gone left out");
    assert_eq!(dirs[0].encode_to_vec(), root);
    assert_eq!(all.last().unwrap().1, "", "the last message has no next page");

    // Pages of 2: one page per call, the token goes on where it stopped.
    let p1 = tree(&mut c, &sha(&root), 2, "").await.unwrap();
    let (d1, t1) = (&p1.last().unwrap().0, p1.last().unwrap().1.clone());
    assert_eq!(p1.iter().map(|p| p.0.len()).sum::<usize>(), 2);
    assert!(!t1.is_empty() && d1.len() <= 2);
    let p2 = tree(&mut c, &sha(&root), 2, &t1).await.unwrap();
    let rest: Vec<re::Directory> = p2.iter().flat_map(|(d, _)| d.clone()).collect();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest, dirs[2..].to_vec());
    assert_eq!(p2.last().unwrap().1, "");

    // Errors: absent root, a bad token, a root that is not a Directory, a negative page size.
    assert_eq!(tree(&mut c, &gone, 0, "").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        tree(&mut c, &sha(&root), 0, "bogus").await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let junk = vec![0xffu8; 10];
    put_blobs(&mut c, std::slice::from_ref(&junk)).await;
    assert_eq!(
        tree(&mut c, &sha(&junk), 0, "").await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        tree(&mut c, &sha(&root), -1, "").await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

fn result_with(files: &[&re::Digest], tree: Option<&re::Digest>) -> re::ActionResult {
    re::ActionResult {
        output_files: files
            .iter()
            .enumerate()
            .map(|(i, d)| re::OutputFile {
                path: format!("out/{i}"),
                digest: Some((*d).clone()),
                ..Default::default()
            })
            .collect(),
        output_directories: tree
            .map(|t| re::OutputDirectory {
                path: "outdir".into(),
                tree_digest: Some(t.clone()),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        exit_code: 0,
        ..Default::default()
    }
}

#[tokio::test]
async fn action_cache_is_complete_or_not_found() {
    let (_dir, s, mut c) = start().await;
    let out = b"an output file".to_vec();
    let in_tree = b"a file inside an output directory".to_vec();
    let t = re::Tree {
        root: Some(dir_msg(&[("x", &sha(&in_tree))], &[])),
        children: vec![],
    }
    .encode_to_vec();
    let action = sha(b"action 1");
    let result = result_with(&[&sha(&out)], Some(&sha(&t)));
    let get = |d: &re::Digest| re::GetActionResultRequest {
        action_digest: Some(d.clone()),
        ..Default::default()
    };

    assert_eq!(
        c.ac.get_action_result(get(&action)).await.unwrap_err().code(),
        Code::NotFound
    );
    let stored =
        c.ac.update_action_result(re::UpdateActionResultRequest {
            action_digest: Some(action.clone()),
            action_result: Some(result.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored, result);
    // Outputs missing: NOT_FOUND, so that no client gets a hit it cannot download.
    let e = c.ac.get_action_result(get(&action)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    put_blobs(&mut c, &[out.clone(), t.clone()]).await;
    let e = c.ac.get_action_result(get(&action)).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::NotFound,
        "a file inside the tree is still missing: {e:?}"
    );
    put_blobs(&mut c, std::slice::from_ref(&in_tree)).await;
    assert_eq!(c.ac.get_action_result(get(&action)).await.unwrap().into_inner(), result);

    // The entry is bazel's HTTP /ac/{sha256}: same bytes both ways.
    let (st, _, body) = req(&s, "GET", &format!("/ac/{}", action.hash), &[], "").await;
    assert_eq!((st, re::ActionResult::decode(body).unwrap()), (200, result.clone()));
    let other = sha(b"action 2");
    let r2 = result_with(&[&sha(&out)], None);
    let (st, _, _) = req(&s, "PUT", &format!("/ac/{}", other.hash), &[], r2.encode_to_vec()).await;
    assert_eq!(st, 200);
    assert_eq!(c.ac.get_action_result(get(&other)).await.unwrap().into_inner(), r2);
    // A value that is no ActionResult (ccache keeps its own entries under /ac/) is a miss.
    let opaque = sha(b"action 3");
    req(
        &s,
        "PUT",
        &format!("/ac/{}", opaque.hash),
        &[],
        &b"\xff\xff\xff not a proto"[..],
    )
    .await;
    assert_eq!(
        c.ac.get_action_result(get(&opaque)).await.unwrap_err().code(),
        Code::NotFound
    );

    // Malformed requests.
    let e =
        c.ac.get_action_result(re::GetActionResultRequest::default())
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e =
        c.ac.update_action_result(re::UpdateActionResultRequest {
            action_digest: Some(action.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Metrics count gRPC calls in the same series as HTTP requests.
    let (_, _, m) = req(&s, "GET", "/metrics", &[], "").await;
    let m = String::from_utf8_lossy(&m);
    assert!(
        m.contains(r#"reprovm_http_requests_total{route="grpc_get_action_result",method="POST",status="404"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"route="grpc_get_action_result",method="POST",status="200"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"route="grpc_update_action_result",method="POST",status="400"} 1"#),
        "{m}"
    );
}

const AUTH: &str = r#"
[auth]
[[auth.tokens]]
name = "reader"
token = "r-grpc-token"
role = "read"
[[auth.tokens]]
name = "ci"
token = "w-grpc-token"
role = "write"
"#;

#[tokio::test]
async fn tokens_roles_and_rate_limits_apply_to_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cas.toml");
    std::fs::write(&cfg, format!("[limits]\nper_token_rps = 20\nburst = 20\n{AUTH}")).unwrap();
    let s = Server::start(&dir.path().join("data"), &[("CAS_CONFIG", cfg.to_str().unwrap())]);
    let mut c = Clients::new(&s).await;
    let data = b"guarded".to_vec();
    let batch = || re::BatchUpdateBlobsRequest {
        requests: vec![update(&sha(b"guarded"), b"guarded")],
        ..Default::default()
    };

    let e = c.cas.batch_update_blobs(batch()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "no token: {e:?}");
    let e = c.cas.batch_update_blobs(authed(batch(), "nope")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "unknown token");
    let e = c
        .cas
        .batch_update_blobs(authed(batch(), "r-grpc-token"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "read token writes: {e:?}");
    let mut bs = c.bs.clone();
    let mut w = tonic::Request::new(futures::stream::iter(common::grpc::write_requests(
        &write_name("", &common::grpc::uuid(), &sha(&data)),
        0,
        &data,
        4,
        true,
    )));
    w.metadata_mut()
        .insert("authorization", "Bearer r-grpc-token".parse().unwrap());
    assert_eq!(bs.write(w).await.unwrap_err().code(), Code::PermissionDenied);
    c.cas.batch_update_blobs(authed(batch(), "w-grpc-token")).await.unwrap();
    // Basic with the token as password, as HTTP takes it.
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("anyone:r-grpc-token");
    let mut r = tonic::Request::new(re::FindMissingBlobsRequest {
        blob_digests: vec![sha(&data)],
        ..Default::default()
    });
    r.metadata_mut()
        .insert("authorization", format!("Basic {basic}").parse().unwrap());
    assert!(c
        .cas
        .find_missing_blobs(r)
        .await
        .unwrap()
        .into_inner()
        .missing_blob_digests
        .is_empty());
    let got = common::grpc::read(&mut c.bs, &read_name("", &sha(&data)), 0, 0)
        .await
        .unwrap_err();
    assert_eq!(got.code(), Code::Unauthenticated);

    // The token's bucket: 20 per second, then RESOURCE_EXHAUSTED.
    let mut refused = 0;
    for _ in 0..60 {
        let r = c
            .caps
            .get_capabilities(authed(re::GetCapabilitiesRequest::default(), "r-grpc-token"))
            .await;
        if let Err(e) = r {
            assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
            refused += 1;
        }
    }
    assert!(refused > 0, "the rate limit never answered");
    let (_, _, m) = req(&s, "GET", "/metrics", &[], "").await;
    let m = String::from_utf8_lossy(&m);
    assert!(
        m.contains(r#"route="grpc_batch_update_blobs",method="POST",status="401"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"route="grpc_batch_update_blobs",method="POST",status="403"} 1"#),
        "{m}"
    );
    assert!(m.contains(r#"route="rate_limited",method="POST",status="429"}"#), "{m}");
}

#[tokio::test]
async fn grpc_listen_serves_grpc_only_and_unknown_methods_are_unimplemented() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[("CAS_GRPC_LISTEN", "127.0.0.1:0")]);
    let grpc_addr = s.grpc_addr.clone().expect("a second banner line names the gRPC port");
    let mut c = Clients::on(common::grpc::channel_to(&grpc_addr).await);
    let data = b"via the grpc-only port";
    assert_eq!(
        write(
            &mut c.bs,
            &write_name("ci/main", &common::grpc::uuid(), &sha(data)),
            data
        )
        .await
        .unwrap(),
        data.len() as i64
    );
    // Same store on the main port, over HTTP and gRPC.
    let (st, _, body) = req(&s, "GET", &format!("/cas/{}", sha(data).hash), &[], "").await;
    assert_eq!((st, &body[..]), (200, &data[..]));
    let mut main = Clients::new(&s).await;
    assert_eq!(
        common::grpc::read(&mut main.bs, &read_name("", &sha(data)), 0, 0)
            .await
            .unwrap(),
        data
    );
    // HTTP on the gRPC-only port: 404 with a code saying why.
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("http://{grpc_addr}/health")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("grpc_only"));
    // A method no service has: UNIMPLEMENTED (after authentication).
    let mut raw = tonic::client::Grpc::new(common::grpc::channel(&s).await);
    raw.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/build.bazel.remote.execution.v2.Execution/Execute");
    let e = raw
        .unary::<re::ExecuteRequest, re::ExecuteRequest, _>(
            tonic::Request::new(re::ExecuteRequest::default()),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
}

#[tokio::test]
async fn grpc_over_tls_with_alpn_and_client_certificates() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let dir = tempfile::tempdir().unwrap();
    common::make_certs(dir.path());
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let cfg = dir.path().join("cas.toml");
    std::fs::write(
        &cfg,
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nclient_cert_role = \"write\"\n{AUTH}",
            p("server.pem"),
            p("server.key"),
            p("ca.pem")
        ),
    )
    .unwrap();
    let s = Server::start(&dir.path().join("data"), &[("CAS_CONFIG", cfg.to_str().unwrap())]);
    assert_eq!(s.scheme, "https");
    let ca = Certificate::from_pem(std::fs::read(p("ca.pem")).unwrap());
    let connect = |tls: ClientTlsConfig| {
        let url = format!("https://{}", s.addr);
        async move {
            Endpoint::from_shared(url)
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
                .unwrap()
        }
    };
    let data = b"over tls and h2";
    let batch = || re::BatchUpdateBlobsRequest {
        requests: vec![update(&sha(data), data)],
        ..Default::default()
    };
    // No certificate: tokens decide (none here, so UNAUTHENTICATED; the read token reads).
    let mut plain = Clients::on(connect(ClientTlsConfig::new().ca_certificate(ca.clone())).await);
    assert_eq!(
        plain.cas.batch_update_blobs(batch()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    plain
        .caps
        .get_capabilities(authed(re::GetCapabilitiesRequest::default(), "r-grpc-token"))
        .await
        .unwrap();
    // A client certificate signed by client_ca gets client_cert_role (write).
    let id = Identity::from_pem(
        std::fs::read(p("client.pem")).unwrap(),
        std::fs::read(p("client.key")).unwrap(),
    );
    let mut mtls = Clients::on(connect(ClientTlsConfig::new().ca_certificate(ca).identity(id)).await);
    let r = mtls.cas.batch_update_blobs(batch()).await.unwrap().into_inner();
    assert_eq!(r.responses[0].status.as_ref().unwrap().code, 0);
    let got = common::grpc::read(&mut mtls.bs, &read_name("", &sha(data)), 0, 0)
        .await
        .unwrap();
    assert_eq!(got, data);
}
