//! Small named values: action-cache entries and refs (with compare-and-swap).

use super::*;

impl RocksStore {
    /// Reads an action-cache value.
    pub fn ac_get_sync(&self, key: &Digest) -> Result<Option<Bytes>> {
        let v = self.inner.db.get_cf(&self.cf(CF_AC), meta_key(key)).map_err(db_err)?;
        Ok(v.map(Bytes::from))
    }

    /// Writes an action-cache value.
    pub fn ac_put_sync(&self, key: &Digest, value: &[u8]) -> Result<()> {
        if value.len() > MAX_AC_VALUE {
            return Err(CasError::TooLarge {
                size: value.len() as u64,
                limit: MAX_AC_VALUE as u64,
            });
        }
        let _g = self.lock_for(key);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_AC), meta_key(key), value);
        let queued = self.inner.opts.track_sync
            && self.sync_queue_in(&mut batch, &crate::store::sync_queue::SyncItem::Action(*key))?;
        let w = self.write_opts(self.inner.opts.sync_writes);
        self.inner.db.write_opt(batch, &w).map_err(db_err)?;
        self.sync_counted(queued, false);
        Ok(())
    }

    /// Every action-cache entry (key and value), in key order: what `reprovm cache gc` keeps
    /// alive. An undecodable key is an error, not a skipped entry, so a caller deciding what is
    /// live never works from a partial list.
    pub fn list_ac(&self) -> impl Iterator<Item = Result<(Digest, Bytes)>> + '_ {
        self.inner
            .db
            .iterator_cf(&self.cf(CF_AC), IteratorMode::Start)
            .map(|item| {
                let (k, v) = item.map_err(db_err)?;
                let d = digest_of_key(&k).ok_or_else(|| CasError::Corrupt("action-cache key".into()))?;
                Ok((d, Bytes::from(v.into_vec())))
            })
    }

    /// Reads a ref.
    pub fn ref_get_sync(&self, name: &str) -> Result<Option<RefValue>> {
        validate_ref_name(name).map_err(CasError::InvalidInput)?;
        let v = self
            .inner
            .db
            .get_cf(&self.cf(CF_REFS), name.as_bytes())
            .map_err(db_err)?;
        Ok(v.map(|v| RefValue {
            etag: ref_etag(&v),
            value: Bytes::from(v),
        }))
    }

    fn check_cond(&self, name: &str, cond: &RefCondition) -> Result<Option<RefValue>> {
        let current = self.ref_get_sync(name)?;
        let ok = match (cond, &current) {
            (RefCondition::Always, _) => true,
            (RefCondition::IfAbsent, cur) => cur.is_none(),
            (RefCondition::IfMatch(tag), Some(cur)) => cur.etag == *tag,
            (RefCondition::IfMatch(_), None) => false,
        };
        if ok {
            Ok(current)
        } else {
            Err(CasError::PreconditionFailed { name: name.to_string() })
        }
    }

    /// Writes a ref if `cond` holds.
    pub fn ref_put_sync(&self, name: &str, value: &[u8], cond: &RefCondition) -> Result<String> {
        if value.len() > MAX_REF_VALUE {
            return Err(CasError::TooLarge {
                size: value.len() as u64,
                limit: MAX_REF_VALUE as u64,
            });
        }
        let _g = self.inner.refs_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.check_cond(name, cond)?;
        let w = self.write_opts(self.inner.opts.sync_writes);
        self.inner
            .db
            .put_cf_opt(&self.cf(CF_REFS), name.as_bytes(), value, &w)
            .map_err(db_err)?;
        Ok(ref_etag(value))
    }

    /// Deletes a ref if `cond` holds.
    pub fn ref_delete_sync(&self, name: &str, cond: &RefCondition) -> Result<bool> {
        let _g = self.inner.refs_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.check_cond(name, cond)?;
        if current.is_none() {
            return Ok(false);
        }
        let w = self.write_opts(self.inner.opts.sync_writes);
        self.inner
            .db
            .delete_cf_opt(&self.cf(CF_REFS), name.as_bytes(), &w)
            .map_err(db_err)?;
        Ok(true)
    }

    /// Ref names starting with `prefix`.
    pub fn ref_list_sync(&self, prefix: &str) -> Result<Vec<String>> {
        let cf = self.cf(CF_REFS);
        let mode = IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.inner.db.iterator_cf(&cf, mode) {
            let (k, _) = item.map_err(db_err)?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(out)
    }
}
