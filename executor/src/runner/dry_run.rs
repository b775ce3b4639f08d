//! `-n`: the keys a run would compute, from the files on disk and the cached results, and what
//! would run and why; nothing is run, restored or written.

use std::collections::HashMap;

use reprovm_sdk::{Cas, Digest};

use crate::action_cache::{self, ActionResult};
use crate::dag::Graph;
use crate::workspace::Workspace;

/// `-n`: what would run and why, without running or restoring anything.
pub async fn dry_run(
    graph: &Graph,
    ws: &Workspace,
    cas: &dyn Cas,
    selected: &[bool],
    force: bool,
) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    // Known results (from hits) and which tasks would run.
    let mut results: HashMap<usize, ActionResult> = HashMap::new();
    let mut runs = vec![false; graph.tasks().len()];
    for i in graph.topo_order(selected) {
        let task = graph.task(i);
        let (would_run, why) = match plan_one(graph, ws, cas, i, &results, &runs, force).await {
            Ok(Some(result)) => {
                results.insert(i, result);
                (false, "cached (hit)".to_string())
            }
            Ok(None) if force => (true, "would run (forced)".to_string()),
            Ok(None) => (true, "would run (miss: no cached result)".to_string()),
            Err(why) => (true, format!("would run ({why})")),
        };
        runs[i] = would_run;
        out.push((task.name.clone(), why, would_run));
    }
    out
}

async fn plan_one(
    graph: &Graph,
    ws: &Workspace,
    cas: &dyn Cas,
    i: usize,
    results: &HashMap<usize, ActionResult>,
    runs: &[bool],
    force: bool,
) -> Result<Option<ActionResult>, String> {
    let task = graph.task(i);
    if let Some(&d) = graph.deps(i).iter().find(|&&d| runs[d]) {
        return Err(format!("dependency `{}` will run", graph.task(d).name));
    }
    let mut inputs = Vec::new();
    for rel in &task.inputs {
        let norm = Workspace::normalize(rel).map_err(|e| e.to_string())?;
        // An input a dep produces is what the dep's cached result says, not what is on disk now.
        let from_dep = graph
            .deps(i)
            .iter()
            .filter_map(|d| results.get(d))
            .flat_map(|r| &r.outputs)
            .find(|o| o.path == norm)
            .map(|o| o.digest);
        let d = match from_dep {
            Some(d) => d,
            None => {
                let abs = ws.resolve(rel).map_err(|e| e.to_string())?;
                action_cache::hash_file(&abs)
                    .await
                    .map_err(|_| format!("input `{rel}` not found"))?
            }
        };
        inputs.push((norm, d));
    }
    let deps: Vec<(String, Digest)> = graph
        .deps(i)
        .iter()
        .map(|&d| (graph.task(d).name.clone(), results[&d].result_digest()))
        .collect();
    if force {
        return Ok(None);
    }
    let key = action_cache::task_key(&task.cmd, &task.env, &inputs, &deps);
    let Some(result) = action_cache::lookup(cas, &key)
        .await
        .map_err(|e| format!("store: {e}"))?
    else {
        return Ok(None);
    };
    if !action_cache::outputs_present(cas, &result)
        .await
        .map_err(|e| format!("store: {e}"))?
    {
        return Err("cached outputs missing from the store".into());
    }
    Ok(Some(result))
}
