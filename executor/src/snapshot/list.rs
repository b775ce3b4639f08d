//! `reprovm snapshot list [NAME]`: one line per snapshot, oldest first, read from the refs and
//! the snapshot objects they point to.

use reprovm_sdk::snapshot::{self as fmt, REF_ROOT};
use reprovm_sdk::Digest;

use super::report;
use super::{display_id, load_snapshot, Ctx, Usage};

/// `snapshot list`.
pub fn run(ctx: &Ctx, name: Option<&str>, json: bool) -> anyhow::Result<u8> {
    let prefix = match name {
        Some(n) => {
            fmt::validate_name(n).map_err(|e| Usage(e.to_string()))?;
            fmt::ref_prefix(n)
        }
        None => REF_ROOT.to_string(),
    };
    let refs = ctx.rt.block_on(ctx.cas.ref_list(&prefix))?;
    let mut count = 0;
    for r in refs.iter().filter(|r| fmt::parse_ref(r).is_ok()) {
        count += 1;
        let loaded = ctx
            .rt
            .block_on(ctx.cas.ref_get(r))
            .map_err(anyhow::Error::from)
            .and_then(|v| {
                let v = v.ok_or_else(|| anyhow::anyhow!("ref vanished"))?;
                let d = Digest::parse(String::from_utf8_lossy(&v.value).trim())?;
                Ok((d, load_snapshot(ctx, &d)?))
            });
        match (loaded, json) {
            (Ok((d, s)), true) => println!(
                "{}",
                serde_json::json!({"snapshot": display_id(r), "ref": r, "digest": d, "object": s})
            ),
            (Ok((_, s)), false) => println!(
                "{:<50} {:>8} files {:>11}  {}:{}",
                display_id(r),
                s.stats.files_new + s.stats.files_changed + s.stats.files_unchanged,
                report::bytes(s.stats.bytes_total),
                s.hostname,
                s.source
            ),
            (Err(e), true) => println!(
                "{}",
                serde_json::json!({"snapshot": display_id(r), "ref": r, "error": format!("{e:#}")})
            ),
            (Err(e), false) => println!("{:<50} unreadable: {e:#}", display_id(r)),
        }
    }
    if !json {
        ctx.out.info(&format!("{count} snapshots"));
    }
    Ok(0)
}
