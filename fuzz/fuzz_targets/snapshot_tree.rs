//! The snapshot tree decoder (`sdk/src/snapshot/tree.rs`) and the snapshot object decoder: any
//! bytes give a tree or an error, never a panic; an accepted tree re-encodes to bytes that decode
//! to the same tree, its entries are strictly sorted, each is found by name, and a file's chunk
//! sizes add up to its size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reprovm_sdk::snapshot::object::Snapshot;
use reprovm_sdk::snapshot::tree::{EntryKind, Tree};

fuzz_target!(|data: &[u8]| {
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
});
