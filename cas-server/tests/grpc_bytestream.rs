//! ByteStream over gRPC against the real binary: reads with offset and limit, streamed and
//! verified writes, resumed writes (after a half-close and after a broken connection),
//! `compressed-blobs/zstd` both ways, bad resource names, and flat memory for a 1 GiB blob.

mod common;

use std::time::Duration;

use common::grpc::{bsproto as bs, channel, read, read_name, sha, uuid, write, write_name, write_requests, Clients};
use common::{noise, req, Server};
use futures::StreamExt;
use sha2::Digest as _;
use tonic::Code;

async fn start(env: &[(&str, &str)]) -> (tempfile::TempDir, Server, Clients) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), env);
    let c = Clients::new(&s).await;
    (dir, s, c)
}

async fn status(c: &mut Clients, name: &str) -> Result<(i64, bool), tonic::Status> {
    let r =
        c.bs.query_write_status(bs::QueryWriteStatusRequest {
            resource_name: name.into(),
        })
        .await?
        .into_inner();
    Ok((r.committed_size, r.complete))
}

#[tokio::test]
async fn reads_with_offsets_limits_and_instance_names() {
    let (_dir, s, mut c) = start(&[]).await;
    let data = noise(1, 3 << 20); // three read messages' worth
    let d = sha(&data);
    assert_eq!(
        write(&mut c.bs, &write_name("", &uuid(), &d), &data).await.unwrap(),
        d.size_bytes
    );
    for instance in ["", "main", "team/ci/linux"] {
        assert_eq!(
            read(&mut c.bs, &read_name(instance, &d), 0, 0).await.unwrap(),
            data,
            "{instance:?}"
        );
    }
    let name = read_name("", &d);
    assert_eq!(read(&mut c.bs, &name, 1000, 0).await.unwrap(), &data[1000..]);
    assert_eq!(read(&mut c.bs, &name, 1000, 10).await.unwrap(), &data[1000..1010]);
    assert_eq!(
        read(&mut c.bs, &name, (3 << 20) - 5, 100).await.unwrap(),
        &data[(3 << 20) - 5..]
    );
    // At the end: nothing; past it or negative: OUT_OF_RANGE; a negative limit: INVALID_ARGUMENT.
    assert_eq!(read(&mut c.bs, &name, 3 << 20, 0).await.unwrap(), Vec::<u8>::new());
    assert_eq!(
        read(&mut c.bs, &name, (3 << 20) + 1, 0).await.unwrap_err().code(),
        Code::OutOfRange
    );
    assert_eq!(
        read(&mut c.bs, &name, -1, 0).await.unwrap_err().code(),
        Code::OutOfRange
    );
    assert_eq!(
        read(&mut c.bs, &name, 0, -1).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // Absent, or present under another size: NOT_FOUND. The empty blob is always there.
    assert_eq!(
        read(&mut c.bs, &read_name("", &sha(b"absent")), 0, 0)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let wrong = format!("blobs/{}/{}", d.hash, d.size_bytes - 1);
    assert_eq!(read(&mut c.bs, &wrong, 0, 0).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        read(&mut c.bs, &read_name("", &sha(b"")), 0, 0).await.unwrap(),
        Vec::<u8>::new()
    );
    // Bad resource names.
    for bad in [
        String::new(),
        "blobs".to_string(),
        format!("blobs/{}", d.hash),
        format!("blobs/{}/notanumber", d.hash),
        format!("blobs/{}/{}", d.hash.to_uppercase(), d.size_bytes),
        format!("blobs/{}/{}/extra", d.hash, d.size_bytes),
        format!("uploads/{}/blobs/{}/{}", uuid(), d.hash, d.size_bytes),
        format!("compressed-blobs/brotli/{}/{}", d.hash, d.size_bytes),
        format!("blobs/md5/{}/{}", d.hash, d.size_bytes),
    ] {
        let e = read(&mut c.bs, &bad, 0, 0).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
    }
    // Blobs written over HTTP read over gRPC.
    let (st, _, _) = req(
        &s,
        "PUT",
        &format!("/cas/{}", sha(b"from http").hash),
        &[],
        &b"from http"[..],
    )
    .await;
    assert_eq!(st, 201);
    assert_eq!(
        read(&mut c.bs, &read_name("x", &sha(b"from http")), 0, 0)
            .await
            .unwrap(),
        b"from http"
    );
}

#[tokio::test]
async fn writes_are_verified_and_wrong_offsets_refused() {
    let (_dir, s, mut c) = start(&[]).await;
    let data = noise(2, 300_000);
    let d = sha(&data);
    // Bytes that do not hash to the name: INVALID_ARGUMENT, nothing stored.
    let mut bad = data.clone();
    bad[7] ^= 1;
    let e = write(&mut c.bs, &write_name("", &uuid(), &d), &bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(req(&s, "HEAD", &format!("/cas/{}", d.hash), &[], "").await.0, 404);
    // Fewer bytes than the name says.
    let e = write(&mut c.bs, &write_name("", &uuid(), &d), &data[..1000])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // A gap in the offsets.
    let name = write_name("", &uuid(), &d);
    let mut reqs = write_requests(&name, 0, &data, 50_000, true);
    reqs[2].write_offset += 1;
    let e = c.bs.write(futures::stream::iter(reqs)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // A first message that starts past 0 with no upload in progress.
    let reqs = write_requests(&write_name("", &uuid(), &d), 10, &data[10..], 50_000, true);
    assert_eq!(
        c.bs.write(futures::stream::iter(reqs)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // A later message naming another resource; a write to a read name; no message at all.
    let mut reqs = write_requests(&write_name("", &uuid(), &d), 0, &data, 50_000, true);
    reqs[1].resource_name = write_name("", &uuid(), &d);
    assert_eq!(
        c.bs.write(futures::stream::iter(reqs)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let reqs = write_requests(&read_name("", &d), 0, &data, 50_000, true);
    assert_eq!(
        c.bs.write(futures::stream::iter(reqs)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let none: Vec<bs::WriteRequest> = Vec::new();
    assert_eq!(
        c.bs.write(futures::stream::iter(none)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // The good bytes, then the same blob again: done at once with the full size.
    assert_eq!(
        write(&mut c.bs, &write_name("i", &uuid(), &d), &data).await.unwrap(),
        d.size_bytes
    );
    let first_only = write_requests(&write_name("i", &uuid(), &d), 0, &data[..10], 10, false);
    let again =
        c.bs.write(futures::stream::iter(first_only))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(again.committed_size, d.size_bytes);
    let (st, _, body) = req(&s, "GET", &format!("/cas/{}", d.hash), &[], "").await;
    assert_eq!((st, body.len()), (200, data.len()));
    // QueryWriteStatus: unknown uploads are NOT_FOUND, finished ones complete.
    assert_eq!(
        status(&mut c, &write_name("", &uuid(), &sha(b"no such upload")))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        status(&mut c, &write_name("", &uuid(), &d)).await.unwrap(),
        (d.size_bytes, true)
    );
    assert_eq!(
        status(&mut c, "not/a/write/name").await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn an_interrupted_write_resumes_where_it_stopped() {
    let (_dir, s, mut c) = start(&[]).await;
    let data = noise(3, 1 << 20);
    let d = sha(&data);

    // 1. The client half-closes before finish_write: the answer says how much is committed.
    let name = write_name("ci", &uuid(), &d);
    let first = write_requests(&name, 0, &data[..400_000], 100_000, false);
    let r = c.bs.write(futures::stream::iter(first)).await.unwrap().into_inner();
    assert_eq!(r.committed_size, 400_000);
    assert_eq!(status(&mut c, &name).await.unwrap(), (400_000, false));
    // Resuming at the wrong offset is refused; at committed_size it completes.
    let wrong = write_requests(&name, 300_000, &data[300_000..], 100_000, true);
    assert_eq!(
        c.bs.write(futures::stream::iter(wrong)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let rest = write_requests(&name, 400_000, &data[400_000..], 100_000, true);
    let r = c.bs.write(futures::stream::iter(rest)).await.unwrap().into_inner();
    assert_eq!(r.committed_size, d.size_bytes);
    assert_eq!(read(&mut c.bs, &read_name("", &d), 0, 0).await.unwrap(), data);

    // 2. The connection breaks mid-stream: a new connection asks QueryWriteStatus and resumes.
    let data = noise(4, 1 << 20);
    let d = sha(&data);
    let name = write_name("", &uuid(), &d);
    let (tx, rx) = tokio::sync::mpsc::channel::<bs::WriteRequest>(16);
    let ch = channel(&s).await;
    let mut doomed = common::grpc::ByteStreamClient::new(ch);
    let call = tokio::spawn(async move { doomed.write(tokio_stream_from(rx)).await });
    for r in write_requests(&name, 0, &data[..600_000], 200_000, false) {
        tx.send(r).await.unwrap();
    }
    let mut fresh = Clients::new(&s).await;
    let mut committed = 0;
    for _ in 0..100 {
        if let Ok((n, false)) = status(&mut fresh, &name).await {
            committed = n;
            if n == 600_000 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(committed, 600_000);
    call.abort(); // drops the client, its channel and the TCP connection mid-call
    drop(tx);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (n, complete) = status(&mut fresh, &name).await.unwrap();
    assert_eq!((n, complete), (600_000, false), "the upload waits for its client");
    let rest = write_requests(&name, n as u64, &data[n as usize..], 200_000, true);
    let r = fresh.bs.write(futures::stream::iter(rest)).await.unwrap().into_inner();
    assert_eq!(r.committed_size, d.size_bytes);
    let (st, _, body) = req(&s, "GET", &format!("/cas/{}", d.hash), &[], "").await;
    assert_eq!(st, 200);
    assert_eq!(hex::encode(sha2::Sha256::digest(&body)), d.hash);
}

/// A stream of the messages sent on `rx`.
fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<bs::WriteRequest>,
) -> impl futures::Stream<Item = bs::WriteRequest> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) })
}

#[tokio::test]
async fn an_upload_left_waiting_expires() {
    let (_dir, _s, mut c) = start(&[("CAS_BODY_IDLE_TIMEOUT_SECS", "1")]).await;
    let data = noise(5, 100_000);
    let d = sha(&data);
    let name = write_name("", &uuid(), &d);
    let r =
        c.bs.write(futures::stream::iter(write_requests(
            &name,
            0,
            &data[..50_000],
            10_000,
            false,
        )))
        .await
        .unwrap();
    assert_eq!(r.into_inner().committed_size, 50_000);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        status(&mut c, &name).await.unwrap_err().code(),
        Code::NotFound,
        "dropped after the idle timeout"
    );
    let late = write_requests(&name, 50_000, &data[50_000..], 10_000, true);
    assert_eq!(
        c.bs.write(futures::stream::iter(late)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn compressed_blobs_both_ways() {
    let (_dir, s, mut c) = start(&[]).await;
    let data = b"zstd over bytestream ".repeat(20_000);
    let d = sha(&data);
    let z = zstd::bulk::compress(&data, 3).unwrap();
    let name = format!(
        "inst/uploads/{}/compressed-blobs/zstd/{}/{}",
        uuid(),
        d.hash,
        d.size_bytes
    );
    let reqs = write_requests(&name, 0, &z, 4096, true);
    let r = c.bs.write(futures::stream::iter(reqs)).await.unwrap().into_inner();
    assert_eq!(r.committed_size, z.len() as i64, "compressed bytes committed");
    // Stored decoded: plain reads over gRPC and HTTP, compressed reads decode to it.
    assert_eq!(read(&mut c.bs, &read_name("", &d), 0, 0).await.unwrap(), data);
    let (st, _, body) = req(&s, "GET", &format!("/cas/{}", d.hash), &[], "").await;
    assert_eq!((st, body.len()), (200, data.len()));
    let zname = format!("compressed-blobs/zstd/{}/{}", d.hash, d.size_bytes);
    let got = read(&mut c.bs, &zname, 0, 0).await.unwrap();
    assert!(got.len() < data.len() / 10, "sent compressed");
    assert_eq!(zstd::stream::decode_all(&got[..]).unwrap(), data);
    // read_offset is in the uncompressed form; read_limit must be 0.
    let got = read(&mut c.bs, &zname, 100, 0).await.unwrap();
    assert_eq!(zstd::stream::decode_all(&got[..]).unwrap(), &data[100..]);
    assert_eq!(
        read(&mut c.bs, &zname, 0, 10).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // Already stored: -1 for a compressed upload. Corrupt zstd: INVALID_ARGUMENT.
    let again = format!("uploads/{}/compressed-blobs/zstd/{}/{}", uuid(), d.hash, d.size_bytes);
    let r =
        c.bs.write(futures::stream::iter(write_requests(&again, 0, &z, 4096, true)))
            .await
            .unwrap();
    assert_eq!(r.into_inner().committed_size, -1);
    let other = b"other".repeat(1000);
    let od = sha(&other);
    let bad = format!("uploads/{}/compressed-blobs/zstd/{}/{}", uuid(), od.hash, od.size_bytes);
    let e =
        c.bs.write(futures::stream::iter(write_requests(
            &bad,
            0,
            b"definitely not zstd",
            4096,
            true,
        )))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}

#[tokio::test]
async fn one_gib_through_bytestream_keeps_server_memory_flat() {
    const SIZE: usize = 1 << 30;
    const CHUNK: usize = 1 << 20;
    let (_dir, s, mut c) = start(&[]).await;
    let mut h = sha2::Sha256::new();
    for i in 0..SIZE / CHUNK {
        h.update(noise(i as u64, CHUNK));
    }
    let d = common::grpc::proto::Digest {
        hash: hex::encode(h.finalize()),
        size_bytes: SIZE as i64,
    };
    let name = write_name("", &uuid(), &d);
    let reqs = futures::stream::iter(0..SIZE / CHUNK).map(move |i| bs::WriteRequest {
        resource_name: if i == 0 { name.clone() } else { String::new() },
        write_offset: (i * CHUNK) as i64,
        finish_write: i + 1 == SIZE / CHUNK,
        data: noise(i as u64, CHUNK),
    });
    let r = c.bs.write(reqs).await.expect("1 GiB upload").into_inner();
    assert_eq!(r.committed_size, SIZE as i64);
    let mut stream =
        c.bs.read(bs::ReadRequest {
            resource_name: read_name("", &d),
            read_offset: 0,
            read_limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut h = sha2::Sha256::new();
    let mut n = 0;
    while let Some(m) = stream.message().await.unwrap() {
        n += m.data.len();
        h.update(&m.data);
    }
    assert_eq!((n, hex::encode(h.finalize())), (SIZE, d.hash));
    let rss = s.peak_rss();
    eprintln!(
        "cas-server peak RSS during the 1 GiB gRPC round trip: {} MiB",
        rss >> 20
    );
    assert!(rss < 150 << 20, "peak RSS {} MiB", rss >> 20);
}
