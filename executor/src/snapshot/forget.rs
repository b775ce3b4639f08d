//! `reprovm snapshot forget [NAME] --keep-last N --keep-daily N …`: deletes the refs of the
//! snapshots the policy does not keep. Data is freed later by `reprovm cache gc` (embedded store),
//! which keeps every blob a remaining snapshot reaches.
//!
//! Policy (restic's): each name's snapshots are taken newest first; `--keep-last N` keeps the N
//! newest; `--keep-<unit> N` keeps the newest snapshot of each of the N most recent hours/days/
//! weeks/months/years that have one. A snapshot kept by any rule stays.

use reprovm_sdk::snapshot::time::Bucket;
use reprovm_sdk::snapshot::{self as fmt, Timestamp, REF_ROOT};
use reprovm_sdk::RefCondition;

use super::args::ForgetArgs;
use super::{display_id, Ctx, Usage};

/// The numbers of a policy.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// `--keep-last`.
    pub last: usize,
    /// `--keep-<unit>` counts.
    pub units: [(Bucket, usize); 5],
}

impl Policy {
    fn from_args(a: &ForgetArgs) -> Option<Self> {
        let all = [
            a.keep_last,
            a.keep_hourly,
            a.keep_daily,
            a.keep_weekly,
            a.keep_monthly,
            a.keep_yearly,
        ];
        if all.iter().all(Option::is_none) {
            return None;
        }
        let n = |o: Option<usize>| o.unwrap_or(0);
        Some(Self {
            last: n(a.keep_last),
            units: [
                (Bucket::Hour, n(a.keep_hourly)),
                (Bucket::Day, n(a.keep_daily)),
                (Bucket::Week, n(a.keep_weekly)),
                (Bucket::Month, n(a.keep_monthly)),
                (Bucket::Year, n(a.keep_yearly)),
            ],
        })
    }

    /// Which of `times` (newest first) to keep.
    pub fn keep(&self, times: &[Timestamp]) -> Vec<bool> {
        let mut keep: Vec<bool> = (0..times.len()).map(|i| i < self.last).collect();
        for (unit, count) in self.units {
            let mut left = count;
            let mut last_bucket = None;
            for (i, t) in times.iter().enumerate() {
                if left == 0 {
                    break;
                }
                let b = t.bucket(unit);
                if last_bucket != Some(b) {
                    last_bucket = Some(b);
                    keep[i] = true;
                    left -= 1;
                }
            }
        }
        keep
    }
}

/// `snapshot forget`.
pub fn run(ctx: &Ctx, args: &ForgetArgs) -> anyhow::Result<u8> {
    let policy = Policy::from_args(args).ok_or_else(|| {
        Usage("no policy given: pass --keep-last N and/or --keep-hourly/daily/weekly/monthly/yearly N".into())
    })?;
    let prefix = match &args.name {
        Some(n) => {
            fmt::validate_name(n).map_err(|e| Usage(e.to_string()))?;
            fmt::ref_prefix(n)
        }
        None => REF_ROOT.to_string(),
    };
    let refs = ctx.rt.block_on(ctx.cas.ref_list(&prefix))?;
    // Group by name; ref lists are sorted, so each group is oldest first.
    let mut groups: Vec<(String, Vec<(Timestamp, String)>)> = Vec::new();
    for r in refs {
        let Ok((name, ts)) = fmt::parse_ref(&r) else {
            ctx.out.warn(&format!("ignoring ref {r}: not a snapshot ref"));
            continue;
        };
        match groups.last_mut() {
            Some((n, list)) if *n == name => list.push((ts, r)),
            _ => groups.push((name, vec![(ts, r)])),
        }
    }
    let (mut kept, mut removed) = (0, 0);
    for (_, mut list) in groups {
        list.sort_by_key(|x| std::cmp::Reverse(x.0));
        let times: Vec<Timestamp> = list.iter().map(|(t, _)| *t).collect();
        for ((_, r), keep) in list.iter().zip(policy.keep(&times)) {
            if keep {
                kept += 1;
                ctx.out.info(&format!("keep    {}", display_id(r)));
                continue;
            }
            removed += 1;
            if args.dry_run {
                ctx.out.info(&format!("would remove {}", display_id(r)));
            } else {
                ctx.rt.block_on(ctx.cas.ref_delete(r, RefCondition::Always))?;
                ctx.out.info(&format!("remove  {}", display_id(r)));
            }
        }
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    ctx.out.info(&format!(
        "forget: kept {kept}, {verb} {removed} snapshots{}",
        if removed > 0 && !args.dry_run {
            " (`reprovm cache gc` frees their data in the embedded store)"
        } else {
            ""
        }
    ));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(&format!("{s}.000000000Z")).unwrap()
    }

    fn policy(last: usize, daily: usize, weekly: usize) -> Policy {
        Policy {
            last,
            units: [
                (Bucket::Hour, 0),
                (Bucket::Day, daily),
                (Bucket::Week, weekly),
                (Bucket::Month, 0),
                (Bucket::Year, 0),
            ],
        }
    }

    #[test]
    fn keep_last_and_daily() {
        // Newest first: two on the 10th, one on the 9th, two on the 8th, one on the 1st.
        let times = [
            at("2026-11-10T18:00:00"),
            at("2026-11-10T08:00:00"),
            at("2026-11-09T12:00:00"),
            at("2026-11-08T23:00:00"),
            at("2026-11-08T01:00:00"),
            at("2026-11-01T12:00:00"),
        ];
        assert_eq!(policy(2, 0, 0).keep(&times), [true, true, false, false, false, false]);
        // The newest of each of the last 3 days that have snapshots.
        assert_eq!(policy(0, 3, 0).keep(&times), [true, false, true, true, false, false]);
        // Rules add up.
        assert_eq!(policy(2, 3, 0).keep(&times), [true, true, true, true, false, false]);
        // 2026-11-08 is a Sunday: weeks of the 10th, the 8th, and the 1st.
        assert_eq!(policy(0, 0, 3).keep(&times), [true, false, false, true, false, true]);
        assert_eq!(policy(0, 0, 0).keep(&times), [false; 6]);
    }
}
