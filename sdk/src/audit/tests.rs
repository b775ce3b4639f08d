use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn open(dir: &Path, key: Option<&str>) -> (AuditLog, PathBuf) {
    let path = dir.join("audit.log");
    let log = AuditLog::open(&AuditConfig {
        path: path.clone(),
        key: key.map(str::to_string),
        app: "test".into(),
        ..AuditConfig::default()
    })
    .unwrap();
    (log, path)
}

fn write_events(log: &AuditLog, n: usize) {
    for i in 0..n {
        let kind = if i % 3 == 0 {
            EventKind::TaskStart
        } else {
            EventKind::CacheHit
        };
        log.record(Event::new(kind, "alice smith", format!("task-{i}"), "execute").details(format!("line\n{i}")));
    }
    assert!(log.flush(Duration::from_secs(5)));
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn timestamps_and_escaping() {
    assert_eq!(format::timestamp(UNIX_EPOCH), "1970-01-01 00:00:00");
    let t = UNIX_EPOCH + Duration::from_secs(1_731_767_400);
    assert_eq!(format::timestamp(t), "2024-11-16 14:30:00");
    assert_eq!(format::word("a b=c%"), "a%20b%3Dc%25");
    assert_eq!(format::unword("a%20b%3Dc%25"), "a b=c%");
    assert_eq!(format::unword("%zz%4"), "%zz%4");
    let ev = Event::new(EventKind::SecurityViolation, "bob", "/etc/passwd", "access")
        .success(false)
        .details("Path traversal attempt chain=x");
    let body = format::body(t, 3, &ev);
    assert_eq!(
        body,
        "[2024-11-16 14:30:00] seq=3 type=SECURITY_VIOLATION user=bob resource=/etc/passwd action=access success=0 details=Path traversal attempt chain=x"
    );
    let line = format!("{body} chain={}", "ab".repeat(32));
    let p = format::parse_line(&line).unwrap();
    assert_eq!((p.seq, p.user.as_str(), p.success), (3, "bob", false));
    assert_eq!(p.details, "Path traversal attempt chain=x");
    assert_eq!(p.event_kind(), Some(EventKind::SecurityViolation));
}

#[test]
fn intact_log_verifies_and_reopen_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = open(dir.path(), None);
    write_events(&log, 5);
    log.close();
    let key_file = default_key_file(&path);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let (log, _) = open(dir.path(), None);
    write_events(&log, 3);
    log.close();
    let key = key_from_file(&key_file, false).unwrap();
    let v = verify(&path, &key).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!((v.lines, v.last_seq), (8, 8));
    // A different key fails every line.
    let v = verify(&path, &key_from_text("other")).unwrap();
    assert_eq!(v.problems.len(), 8);
}

#[test]
fn edit_removal_and_reorder_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = open(dir.path(), Some("passphrase"));
    write_events(&log, 8);
    log.close();
    let key = key_from_text("passphrase");
    let orig = lines(&path);

    let mut edited = orig.clone();
    edited[3] = edited[3].replace("user=alice%20smith", "user=mallory");
    rewrite(&path, &edited);
    let v = verify(&path, &key).unwrap();
    assert_eq!(
        v.problems,
        vec![Problem {
            line: 4,
            seq: Some(4),
            kind: ProblemKind::Edited
        }]
    );

    let mut removed = orig.clone();
    removed.remove(4);
    rewrite(&path, &removed);
    let v = verify(&path, &key).unwrap();
    assert_eq!(
        v.problems,
        vec![Problem {
            line: 5,
            seq: Some(6),
            kind: ProblemKind::Removed { from: 5, to: 5 }
        }]
    );

    let mut swapped = orig.clone();
    swapped.swap(2, 3);
    rewrite(&path, &swapped);
    let v = verify(&path, &key).unwrap();
    let named: Vec<usize> = v.problems.iter().map(|p| p.line).collect();
    assert_eq!(named, [3, 4], "{:?}", v.problems);
    assert!(v
        .problems
        .iter()
        .all(|p| matches!(p.kind, ProblemKind::Reordered { .. })));

    let mut reseq = orig.clone();
    reseq[5] = reseq[5].replace("seq=6 ", "seq=9 ");
    rewrite(&path, &reseq);
    let v = verify(&path, &key).unwrap();
    assert_eq!(
        v.problems.first().map(|p| (p.line, &p.kind)),
        Some((6, &ProblemKind::Edited))
    );
}

#[test]
fn report_counts_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = open(dir.path(), Some("k"));
    write_events(&log, 6);
    log.record(Event::new(EventKind::AuthFailure, "anonymous", "/v1/blobs/x", "PUT").success(false));
    log.close();
    let r = report(&path, None, None).unwrap();
    assert_eq!(r.events, 7);
    assert_eq!(r.by_type["TASK_START"], 2);
    assert_eq!(r.by_type["CACHE_HIT"], 4);
    assert_eq!(r.security.len(), 1);
    assert_eq!(r.failures, 1);
    let r = report(&path, Some("1999-01-01"), Some("2000-01-01")).unwrap();
    assert_eq!(r.events, 0);
    let today = format::timestamp(SystemTime::now());
    let r = report(&path, Some(&today[..10]), Some(&today[..10])).unwrap();
    assert_eq!(r.events, 7);
}

#[test]
fn syslog_gets_a_copy_and_a_full_queue_drops_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let log = AuditLog::open(&AuditConfig {
        path: dir.path().join("a.log"),
        key: Some("k".into()),
        syslog: Some(sock_path),
        app: "cas-server".into(),
        capacity: 1,
        ..AuditConfig::default()
    })
    .unwrap();
    log.record(Event::new(EventKind::Start, "root", "cas-server", "start"));
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]);
    assert!(msg.starts_with("<86>cas-server["), "{msg}");
    assert!(msg.contains("type=START"), "{msg}");
    // 10,000 events into a queue of 1: some are dropped, none blocks.
    for _ in 0..10_000 {
        log.record(Event::new(EventKind::CacheHit, "u", "r", "get"));
    }
    log.close();
    assert!(log.dropped() > 0);
    assert_eq!(log.written() + log.dropped(), 10_001);
}
