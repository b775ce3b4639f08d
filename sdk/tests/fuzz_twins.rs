//! Stable twins of the cargo-fuzz targets in `fuzz/` for the sdk's parsers (`range_parse`,
//! `digest_path`, `batch_decode`, `snapshot_tree`): the same properties, checked on a few thousand mutated inputs
//! (seeded, so a failure replays) and on every input kept in `fuzz/seeds/` and
//! `fuzz/regressions/`, so that `cargo test` covers them without nightly.

use std::path::PathBuf;

use bytes::BytesMut;
use reprovm_sdk::digest::HashKind;
use reprovm_sdk::proto::{encode_frame, validate_ref_name, BatchDecoder, ByteRange};
use reprovm_sdk::snapshot::{EntryKind, Snapshot, Tree};
use reprovm_sdk::Digest;

const ROUNDS: usize = 20_000;

/// A small xorshift generator: reproducible, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutates `input`: byte flips, insertions and deletions, and splices of `dict` tokens.
fn mutate(rng: &mut Rng, input: &[u8], dict: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.insert(at, rng.next() as u8),
            2 if at < out.len() => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                out.drain(at..end);
            }
            _ => {
                let tok = dict[rng.below(dict.len())];
                out.splice(at..at, tok.iter().copied());
            }
        }
    }
    out
}

/// Inputs kept for `target` in fuzz/seeds and fuzz/regressions.
fn kept_inputs(target: &str) -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir).join(target)) {
            for e in rd.flatten() {
                out.push(std::fs::read(e.path()).unwrap());
            }
        }
    }
    assert!(!out.is_empty(), "no kept inputs for {target} in {}", root.display());
    out
}

fn seed() -> u64 {
    let s = std::env::var("TWIN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd);
    println!("twin seed {s} (replay with TWIN_SEED={s})");
    s | 1
}

fn check_range(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap());
    let Ok(header) = std::str::from_utf8(&data[8..]) else {
        return;
    };
    let Ok(r) = ByteRange::parse(header) else {
        return;
    };
    assert_eq!(ByteRange::parse(&r.to_header()), Ok(r), "{header:?}");
    for size in [size, size % 4096, 0, 1, u64::MAX] {
        if let Some(span) = r.resolve(size) {
            assert!(span.start < span.end && span.end <= size, "{r:?} in {size}: {span:?}");
        }
    }
}

fn check_digest_path(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for kind in [HashKind::Blake3, HashKind::Sha256] {
        match Digest::parse_kind(kind, s) {
            Ok(d) => assert_eq!(d.to_hex(), s),
            Err(e) => assert!(e.to_string().len() < 1200),
        }
    }
    if validate_ref_name(s).is_ok() {
        assert!(!s.is_empty() && s.len() <= 512);
        assert!(
            s.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."),
            "{s:?}"
        );
        assert!(!s.contains('\0') && !s.contains('\\'));
    }
}

fn check_batch(data: &[u8]) {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let max_frame = 4096;
    let mut dec = BatchDecoder::new(max_frame);
    let mut reencoded = BytesMut::new();
    let mut failed = false;
    'feed: for chunk in body.chunks(step) {
        dec.push(chunk);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.data.len() as u64 <= max_frame);
                    encode_frame(&f.digest, &f.data, &mut reencoded);
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(&body[..reencoded.len()], &reencoded[..]);
    if !failed && dec.finish().is_ok() {
        assert_eq!(reencoded.len(), body.len());
    }
}

fn check_tree(data: &[u8]) {
    let _ = Snapshot::decode(data);
    let Ok(tree) = Tree::decode(data) else {
        return;
    };
    let again = Tree::decode(&tree.encode()).expect("a decoded tree re-encodes to a valid tree");
    assert_eq!(again, tree);
    let mut prev: Option<Vec<u8>> = None;
    for e in &tree.entries {
        let name = e.name_bytes().expect("names decoded once");
        assert!(prev.as_ref().is_none_or(|p| *p < name));
        assert_eq!(tree.get(&name), Some(e));
        if e.kind == EntryKind::File {
            let total = e.chunks.iter().try_fold(0u64, |acc, c| acc.checked_add(c.size));
            assert_eq!(total, e.size, "file {:?}", e.name);
        }
        prev = Some(name);
    }
}

fn run(target: &str, dict: &[&[u8]], check: fn(&[u8])) {
    let kept = kept_inputs(target);
    for input in &kept {
        check(input);
    }
    let mut rng = Rng(seed());
    for _ in 0..ROUNDS {
        let base = &kept[rng.below(kept.len())];
        check(&mutate(&mut rng, base, dict));
    }
}

#[test]
fn range_parse_twin() {
    run(
        "range_parse",
        &[
            b"bytes=",
            b"-",
            b",",
            b" ",
            b"18446744073709551615",
            b"18446744073709551616",
            b"0",
            b"9",
        ],
        check_range,
    );
}

#[test]
fn digest_path_twin() {
    run(
        "digest_path",
        &[
            b"/",
            b"..",
            b".",
            b"\0",
            b"\\",
            b"a",
            b"F",
            b"%2e",
            "é".as_bytes(),
            b"0123456789abcdef",
        ],
        check_digest_path,
    );
}

#[test]
fn batch_decode_twin() {
    run(
        "batch_decode",
        &[&[0xff; 8], &[0; 8], &[0, 0, 0, 0, 0, 0, 0x10, 0], &[0; 32]],
        check_batch,
    );
}

#[test]
fn snapshot_tree_twin() {
    run(
        "snapshot_tree",
        &[
            b"\"size\":9223372036854775808",
            b"\"size\":0",
            b"\"name\":\"..\"",
            b"\"name_hex\":\"2f00\"",
            b"\"type\":\"dir\"",
            b"\"type\":\"symlink\"",
            b"{}",
            b"[]",
            b",",
            b"\"a\"",
            b"18446744073709551615",
        ],
        check_tree,
    );
}
