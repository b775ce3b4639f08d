//! Key-value entries (the `kv` column family): small records under byte keys, written with an
//! optional condition, listed by prefix (with a delimiter, as S3 lists). What a record says is
//! `crate::kv`'s business; this file only stores and finds them.

use super::*;

/// When a key-value write or delete goes ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvCondition {
    /// Always.
    Always,
    /// Only when the key holds nothing.
    IfAbsent,
    /// Only when the key holds exactly these bytes.
    IfEquals(Vec<u8>),
}

/// What a conditional write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvWrite {
    /// The condition did not hold; nothing was written.
    Refused,
    /// The key held nothing before.
    Created,
    /// The key held a record, now replaced.
    Replaced,
}

/// One item of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvItem {
    /// A record: its full key and value.
    Entry(Vec<u8>, Vec<u8>),
    /// Keys that continue past the delimiter after the prefix: the common part, delimiter included.
    Prefix(Vec<u8>),
}

/// The smallest key greater than every key starting with `prefix` (`None` if there is none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl RocksStore {
    fn kv_lock(&self, key: &[u8]) -> std::sync::MutexGuard<'_, ()> {
        let i = blake3::hash(key).as_bytes()[0] as usize % self.inner.kv_locks.len();
        self.inner.kv_locks[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record under `key`.
    pub fn kv_get_sync(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.db.get_cf(&self.cf(CF_KV), key).map_err(db_err)
    }

    fn kv_holds(&self, key: &[u8], cond: &KvCondition) -> Result<bool> {
        Ok(match cond {
            KvCondition::Always => true,
            KvCondition::IfAbsent => self.kv_get_sync(key)?.is_none(),
            KvCondition::IfEquals(v) => self.kv_get_sync(key)?.as_deref() == Some(&v[..]),
        })
    }

    /// Writes `value` under `key` if `cond` holds. One RocksDB write: a reader sees the old
    /// record or the new one.
    pub fn kv_put_sync(&self, key: &[u8], value: &[u8], cond: &KvCondition) -> Result<KvWrite> {
        let _g = self.kv_lock(key);
        let old = self.kv_get_sync(key)?;
        let holds = match cond {
            KvCondition::Always => true,
            KvCondition::IfAbsent => old.is_none(),
            KvCondition::IfEquals(v) => old.as_deref() == Some(&v[..]),
        };
        if !holds {
            return Ok(KvWrite::Refused);
        }
        let w = self.write_opts(self.inner.opts.sync_writes);
        self.inner
            .db
            .put_cf_opt(&self.cf(CF_KV), key, value, &w)
            .map_err(db_err)?;
        Ok(if old.is_some() {
            KvWrite::Replaced
        } else {
            KvWrite::Created
        })
    }

    /// Deletes the record under `key` if there is one and `cond` holds; returns whether it did.
    pub fn kv_delete_sync(&self, key: &[u8], cond: &KvCondition) -> Result<bool> {
        let _g = self.kv_lock(key);
        if self.kv_get_sync(key)?.is_none() || !self.kv_holds(key, cond)? {
            return Ok(false);
        }
        let w = self.write_opts(self.inner.opts.sync_writes);
        self.inner.db.delete_cf_opt(&self.cf(CF_KV), key, &w).map_err(db_err)?;
        Ok(true)
    }

    /// Up to `limit` items of the records whose keys start with `prefix`, in key order, from the
    /// first key greater than `after` (when given). With a `delimiter`, keys that have it again
    /// past the prefix are folded into one [`KvItem::Prefix`] each, and the walk skips over
    /// them (a seek, not a walk of every key below). Returns the items and whether more follow.
    pub fn kv_list_sync(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        delimiter: Option<u8>,
        limit: usize,
    ) -> Result<(Vec<KvItem>, bool)> {
        let cf = self.cf(CF_KV);
        let mut it = self.inner.db.raw_iterator_cf(&cf);
        match after {
            // After a folded prefix: past every key under it.
            Some(a) if a >= prefix && delimiter.is_some_and(|d| a.last() == Some(&d)) => match prefix_end(a) {
                Some(next) => it.seek(next),
                None => return Ok((Vec::new(), false)),
            },
            Some(a) if a >= prefix => {
                it.seek(a);
                if it.key() == Some(a) {
                    it.next();
                }
            }
            _ => it.seek(prefix),
        }
        let mut items = Vec::new();
        while it.valid() {
            let key = it.key().expect("valid iterator has a key");
            if !key.starts_with(prefix) {
                break;
            }
            if items.len() == limit {
                return Ok((items, true));
            }
            let rest = &key[prefix.len()..];
            match delimiter.and_then(|d| rest.iter().position(|b| *b == d)) {
                Some(pos) => {
                    let common = key[..prefix.len() + pos + 1].to_vec();
                    let Some(next) = prefix_end(&common) else { break };
                    items.push(KvItem::Prefix(common));
                    it.seek(&next);
                }
                None => {
                    items.push(KvItem::Entry(key.to_vec(), it.value().unwrap_or_default().to_vec()));
                    it.next();
                }
            }
        }
        it.status().map_err(db_err)?;
        Ok((items, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, RocksStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStore::open(dir.path(), StoreOptions::default()).unwrap();
        (dir, s)
    }

    #[test]
    fn conditions_and_listing() {
        let (_d, s) = store();
        let put = |v: &[u8], c: KvCondition| s.kv_put_sync(b"n/a", v, &c).unwrap();
        assert_eq!(put(b"1", KvCondition::IfAbsent), KvWrite::Created);
        assert_eq!(put(b"2", KvCondition::IfAbsent), KvWrite::Refused);
        assert_eq!(put(b"2", KvCondition::IfEquals(b"0".to_vec())), KvWrite::Refused);
        assert_eq!(put(b"2", KvCondition::IfEquals(b"1".to_vec())), KvWrite::Replaced);
        assert_eq!(s.kv_get_sync(b"n/a").unwrap().as_deref(), Some(&b"2"[..]));
        for k in ["n/b/1", "n/b/2", "n/b/c/3", "n/d", "nx/e", "m/f"] {
            s.kv_put_sync(k.as_bytes(), b"v", &KvCondition::Always).unwrap();
        }
        let keys = |items: &[KvItem]| -> Vec<String> {
            items
                .iter()
                .map(|i| match i {
                    KvItem::Entry(k, _) => String::from_utf8_lossy(k).into_owned(),
                    KvItem::Prefix(p) => format!("{}*", String::from_utf8_lossy(p)),
                })
                .collect()
        };
        let (items, more) = s.kv_list_sync(b"n/", None, Some(b'/'), 100).unwrap();
        assert_eq!(keys(&items), ["n/a", "n/b/*", "n/d"]);
        assert!(!more);
        let (items, _) = s.kv_list_sync(b"n/b/", None, Some(b'/'), 100).unwrap();
        assert_eq!(keys(&items), ["n/b/1", "n/b/2", "n/b/c/*"]);
        let (items, more) = s.kv_list_sync(b"n/", None, None, 2).unwrap();
        assert_eq!((keys(&items), more), (vec!["n/a".to_string(), "n/b/1".into()], true));
        let (items, _) = s.kv_list_sync(b"n/", Some(b"n/b/1"), None, 100).unwrap();
        assert_eq!(keys(&items), ["n/b/2", "n/b/c/3", "n/d"]);
        let (items, more) = s.kv_list_sync(b"n/", None, Some(b'/'), 2).unwrap();
        assert_eq!((keys(&items), more), (vec!["n/a".to_string(), "n/b/*".into()], true));
        let (items, more) = s.kv_list_sync(b"n/", Some(b"n/b/"), Some(b'/'), 2).unwrap();
        assert_eq!((keys(&items), more), (vec!["n/d".to_string()], false));
        assert!(!s.kv_delete_sync(b"n/a", &KvCondition::IfEquals(b"1".to_vec())).unwrap());
        assert!(s.kv_delete_sync(b"n/a", &KvCondition::Always).unwrap());
        assert!(!s.kv_delete_sync(b"n/a", &KvCondition::Always).unwrap());
        assert_eq!(s.kv_get_sync(b"n/a").unwrap(), None);
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
    }
}
