//! Stable twin of the `manifest_parse` cargo-fuzz target (`fuzz/`): the same properties on a few
//! thousand mutated manifests (seeded, so a failure replays) and on every input kept in
//! `fuzz/seeds/manifest_parse` and `fuzz/regressions/manifest_parse`.

use std::path::{Path, PathBuf};

use reprovm::manifest::{lex::is_task_name, parse_str};

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

const DICT: &[&str] = &[
    "task ", "{", "}", "\n", " = ", "cmd", "deps", "inputs", "outputs", "env", "timeout", "retries", ",", "#", "\0",
    "\r", "..", "/", "1.5m", "-3", "A=B", "é", "\t",
];

fn mutate(rng: &mut Rng, input: &str) -> String {
    let mut out = input.as_bytes().to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if at < out.len() => {
                let end = (at + 1 + rng.below(12)).min(out.len());
                out.drain(at..end);
            }
            1 => {
                // A long run, to meet the length limits.
                let n = [10, 200, 70_000][rng.below(3)];
                out.splice(at..at, std::iter::repeat_n(b'x', n));
            }
            _ => {
                let tok = DICT[rng.below(DICT.len())].as_bytes();
                out.splice(at..at, tok.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn check(src: &str) {
    match parse_str(Path::new("fuzz.rvm"), src) {
        Ok(m) => {
            for t in &m.tasks {
                assert!(is_task_name(&t.name), "task name {:?}", t.name);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("fuzz.rvm:"), "{msg}");
            assert!(
                msg.len() < 4096,
                "error message of {} bytes: {}",
                msg.len(),
                &msg[..200]
            );
        }
    }
}

#[test]
fn manifest_parse_twin() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut kept = Vec::new();
    for dir in ["seeds", "regressions"] {
        for e in std::fs::read_dir(root.join(dir).join("manifest_parse"))
            .unwrap()
            .flatten()
        {
            kept.push(String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned());
        }
    }
    assert!(kept.len() >= 4, "kept inputs: {}", kept.len());
    for src in &kept {
        check(src);
    }
    let seed = std::env::var("TWIN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6d61_6e69_6665_7374u64);
    println!("twin seed {seed} (replay with TWIN_SEED={seed})");
    let mut rng = Rng(seed | 1);
    for _ in 0..5_000 {
        let base = &kept[rng.below(kept.len())];
        check(&mutate(&mut rng, base));
    }
}
