//! Gradle's HTTP build cache (`HttpBuildCache`, url `http://HOST:PORT/kv/gradle/`) at protocol
//! level: Gradle itself cannot be installed on these machines, so its requests are sent shape for
//! shape over raw sockets: `GET {key}` (200 with the artifact, or 404), `PUT {key}` with
//! `Content-Type: application/vnd.gradle.build-cache-artifact.v2` and `Expect: 100-continue`
//! (the server says `100 Continue` before the body, or refuses at once with 413 when too large),
//! HTTP Basic credentials.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{basic, noise, tokens_config, Server};

const ARTIFACT: &str = "application/vnd.gradle.build-cache-artifact.v2";

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response head (status line and headers) from `r`.
fn read_head(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    (status, headers)
}

fn read_answer(r: &mut BufReader<TcpStream>, head_request: bool) -> Answer {
    let (status, headers) = read_head(r);
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; if head_request { 0 } else { len }];
    r.read_exact(&mut body).unwrap();
    Answer { status, headers, body }
}

fn connect(s: &Server) -> (TcpStream, BufReader<TcpStream>) {
    let c = TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(c.try_clone().unwrap());
    (c, r)
}

/// Gradle's load: `GET {url}{key}` with its Accept and version headers.
fn gradle_get(s: &Server, key: &str, auth: &str) -> Answer {
    let (mut c, mut r) = connect(s);
    write!(
        c,
        "GET /kv/gradle/{key} HTTP/1.1\r\nHost: {}\r\nAccept: {ARTIFACT}, */*\r\nX-Gradle-Version: 8.10\r\n\
         User-Agent: Gradle/8.10 (Linux;6.1;amd64) (Eclipse Adoptium;21.0.4;21.0.4+7-LTS)\r\n\
         Authorization: {auth}\r\nConnection: close\r\n\r\n",
        s.addr
    )
    .unwrap();
    read_answer(&mut r, false)
}

/// Gradle's store with `useExpectContinue`: the headers, then the body only after `100 Continue`.
/// Returns the final answer and whether the server asked for the body.
fn gradle_put(s: &Server, key: &str, auth: &str, body: &[u8]) -> (Answer, bool) {
    let (mut c, mut r) = connect(s);
    write!(
        c,
        "PUT /kv/gradle/{key} HTTP/1.1\r\nHost: {}\r\nContent-Type: {ARTIFACT}\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\nX-Gradle-Version: 8.10\r\nUser-Agent: Gradle/8.10\r\nAuthorization: {auth}\r\n\
         Connection: close\r\n\r\n",
        s.addr,
        body.len()
    )
    .unwrap();
    let (status, headers) = read_head(&mut r);
    if status != 100 {
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
        let mut rest = vec![0; len];
        r.read_exact(&mut rest).unwrap();
        return (
            Answer {
                status,
                headers,
                body: rest,
            },
            false,
        );
    }
    c.write_all(body).unwrap();
    (read_answer(&mut r, false), true)
}

#[tokio::test]
async fn gradle_http_build_cache_request_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tokens_config(dir.path(), &[("dev", "r-secret", "read"), ("ci", "w-secret", "write")]);
    let s = Server::start(
        &dir.path().join("data"),
        &[("CAS_CONFIG", cfg.to_str().unwrap()), ("CAS_MAX_BLOB_SIZE", "1MiB")],
    );
    let (ci, dev) = (basic("ci", "w-secret"), basic("dev", "r-secret"));
    let key = "4b6f1c2e9a0d3b7c8e5f6a1b2c3d4e5f";
    let artifact = noise(7, 300 << 10);

    // A miss.
    assert_eq!(gradle_get(&s, key, &dev).status, 404);
    // A store: 100 Continue, then 201.
    let (a, asked) = gradle_put(&s, key, &ci, &artifact);
    assert!(asked, "the server did not send 100 Continue");
    assert_eq!(a.status, 201);
    // A hit, with the artifact's content type back.
    let hit = gradle_get(&s, key, &dev);
    assert_eq!(hit.status, 200);
    assert_eq!(hit.body, artifact);
    assert_eq!(hit.header("content-type"), Some(ARTIFACT));
    // Storing again (another build of the same task) replaces: 204.
    let (a, _) = gradle_put(&s, key, &ci, &artifact);
    assert_eq!(a.status, 204);
    // Too large: refused before the body is sent (Gradle then skips storing that entry).
    let (a, asked) = gradle_put(&s, "00000000000000000000000000000001", &ci, &noise(8, (1 << 20) + 1));
    assert_eq!(a.status, 413);
    assert!(!asked, "the server asked for a body it refuses");
    assert_eq!(gradle_get(&s, "00000000000000000000000000000001", &dev).status, 404);
    // A read-only token cannot store (403, still before the body); no credentials: 401.
    let (a, asked) = gradle_put(&s, "00000000000000000000000000000002", &dev, b"x");
    assert_eq!((a.status, asked), (403, false));
    let (a, _) = gradle_put(&s, "00000000000000000000000000000002", &basic("ci", "wrong"), b"x");
    assert_eq!(a.status, 401);
    assert!(a.header("www-authenticate").is_some_and(|v| v.contains("Basic")));
    assert_eq!(gradle_get(&s, key, &basic("x", "nope")).status, 401);
}
