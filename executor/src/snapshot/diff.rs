//! `reprovm snapshot diff A B`: the paths added (`+`), removed (`-`) and modified (`M`) from A to
//! B. Subtrees with the same digest are skipped without being read; the contents of an added or
//! removed directory are listed too (directories end with `/`). "Modified" means a different
//! type, content, symlink target or mode; a changed mtime alone is not listed.

use std::cmp::Ordering;

use anyhow::Context;

use reprovm_sdk::snapshot::{Entry, EntryKind, Tree};

use super::{join_display, load_tree, resolve, Ctx};

/// One difference.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    /// `+`, `-` or `M`.
    pub change: char,
    /// Path inside the snapshots.
    pub path: String,
}

struct Differ<'a> {
    ctx: &'a Ctx<'a>,
    out: Vec<Change>,
}

fn shown(prefix: &str, e: &Entry) -> String {
    let p = join_display(prefix, &e.name);
    if e.kind == EntryKind::Dir {
        format!("{p}/")
    } else {
        p
    }
}

impl Differ<'_> {
    /// Lists `e` (and, for a directory, everything under it) as `change`.
    fn all(&mut self, change: char, prefix: &str, e: &Entry) -> anyhow::Result<()> {
        self.out.push(Change {
            change,
            path: shown(prefix, e),
        });
        if let (EntryKind::Dir, Some(d)) = (e.kind, e.subtree) {
            let tree = load_tree(self.ctx, &d)?;
            let p = join_display(prefix, &e.name);
            for child in &tree.entries {
                self.all(change, &p, child)?;
            }
        }
        Ok(())
    }

    fn trees(&mut self, prefix: &str, a: &Tree, b: &Tree) -> anyhow::Result<()> {
        let (mut i, mut j) = (0, 0);
        while i < a.entries.len() || j < b.entries.len() {
            let order = match (a.entries.get(i), b.entries.get(j)) {
                (Some(x), Some(y)) => x.name_bytes()?.cmp(&y.name_bytes()?),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match order {
                Ordering::Less => {
                    self.all('-', prefix, &a.entries[i])?;
                    i += 1;
                }
                Ordering::Greater => {
                    self.all('+', prefix, &b.entries[j])?;
                    j += 1;
                }
                Ordering::Equal => {
                    self.pair(prefix, &a.entries[i], &b.entries[j])?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    fn pair(&mut self, prefix: &str, x: &Entry, y: &Entry) -> anyhow::Result<()> {
        match (x.kind, y.kind) {
            (EntryKind::Dir, EntryKind::Dir) => {
                if x.mode != y.mode {
                    self.out.push(Change {
                        change: 'M',
                        path: shown(prefix, y),
                    });
                }
                if x.subtree != y.subtree {
                    let subtree = |e: &Entry| e.subtree.context("directory entry without a subtree");
                    let (ta, tb) = (load_tree(self.ctx, &subtree(x)?)?, load_tree(self.ctx, &subtree(y)?)?);
                    self.trees(&join_display(prefix, &y.name), &ta, &tb)?;
                }
            }
            (a, b) if a != b => {
                // A type change: the old thing went, the new one came.
                self.all('-', prefix, x)?;
                self.all('+', prefix, y)?;
            }
            _ if x.differs_from(y) => self.out.push(Change {
                change: 'M',
                path: shown(prefix, y),
            }),
            _ => {}
        }
        Ok(())
    }
}

/// `snapshot diff`.
pub fn run(ctx: &Ctx, a: &str, b: &str, json: bool) -> anyhow::Result<u8> {
    let (ra, rb) = (resolve(ctx, a)?, resolve(ctx, b)?);
    let mut d = Differ { ctx, out: Vec::new() };
    if ra.snapshot.root != rb.snapshot.root {
        let (ta, tb) = (load_tree(ctx, &ra.snapshot.root)?, load_tree(ctx, &rb.snapshot.root)?);
        d.trees("", &ta, &tb)?;
    }
    let count = |c: char| d.out.iter().filter(|x| x.change == c).count();
    let (added, removed, modified) = (count('+'), count('-'), count('M'));
    if json {
        let v = serde_json::json!({
            "a": ra.id(), "b": rb.id(),
            "added": added, "removed": removed, "modified": modified,
            "changes": d.out,
        });
        println!("{v}");
    } else {
        for c in &d.out {
            println!("{}  {}", c.change, c.path);
        }
        ctx.out.info(&format!(
            "{} → {}: {added} added, {removed} removed, {modified} modified",
            ra.id(),
            rb.id()
        ));
    }
    Ok(0)
}
