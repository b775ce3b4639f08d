//! The dependency graph of a manifest's tasks.

use rustc_hash::FxHashMap as HashMap;

use crate::manifest::{Manifest, Task};

/// A manifest whose deps do not form a runnable graph.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// `deps = x` where no task `x` exists.
    #[error("task `{task}` (line {line}) depends on unknown task `{dep}`")]
    UnknownDep {
        /// The task.
        task: String,
        /// The missing dependency.
        dep: String,
        /// Line of the task.
        line: usize,
    },
    /// A target named on the command line that the manifest lacks.
    #[error("unknown target `{0}` (see --list-tasks)")]
    UnknownTarget(String),
    /// Tasks that depend on each other.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// Tasks and their edges, by index into [`Graph::tasks`].
#[derive(Debug)]
pub struct Graph {
    tasks: Vec<Task>,
    index: HashMap<String, usize>,
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
}

impl Graph {
    /// Builds and checks the graph: every dep exists and there is no cycle.
    pub fn build(manifest: Manifest) -> Result<Self, GraphError> {
        let index: HashMap<String, usize> = manifest
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let mut deps = Vec::with_capacity(manifest.tasks.len());
        let mut dependents = vec![Vec::new(); manifest.tasks.len()];
        for (i, t) in manifest.tasks.iter().enumerate() {
            let mut ds = Vec::new();
            for d in &t.deps {
                let j = *index.get(d).ok_or_else(|| GraphError::UnknownDep {
                    task: t.name.clone(),
                    dep: d.clone(),
                    line: t.line,
                })?;
                ds.push(j);
                dependents[j].push(i);
            }
            deps.push(ds);
        }
        let g = Self {
            tasks: manifest.tasks,
            index,
            deps,
            dependents,
        };
        if let Some(cycle) = g.find_cycle() {
            return Err(GraphError::Cycle(
                cycle.into_iter().map(|i| g.tasks[i].name.clone()).collect(),
            ));
        }
        Ok(g)
    }

    /// All tasks, in manifest order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Task `i`.
    pub fn task(&self, i: usize) -> &Task {
        &self.tasks[i]
    }

    /// Indices of the direct dependencies of `i`.
    pub fn deps(&self, i: usize) -> &[usize] {
        &self.deps[i]
    }

    /// Indices of the tasks that directly depend on `i`.
    pub fn dependents(&self, i: usize) -> &[usize] {
        &self.dependents[i]
    }

    /// The tasks to run for `targets` (all when empty): the targets and everything they depend on.
    pub fn select(&self, targets: &[String]) -> Result<Vec<bool>, GraphError> {
        if targets.is_empty() {
            return Ok(vec![true; self.tasks.len()]);
        }
        let mut selected = vec![false; self.tasks.len()];
        let mut stack = Vec::new();
        for t in targets {
            stack.push(*self.index.get(t).ok_or_else(|| GraphError::UnknownTarget(t.clone()))?);
        }
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut selected[i], true) {
                stack.extend(&self.deps[i]);
            }
        }
        Ok(selected)
    }

    /// Selected tasks in an order where every task comes after its deps (manifest order otherwise).
    pub fn topo_order(&self, selected: &[bool]) -> Vec<usize> {
        let mut done = vec![false; self.tasks.len()];
        let mut out = Vec::new();
        fn visit(g: &Graph, i: usize, done: &mut [bool], out: &mut Vec<usize>) {
            if done[i] {
                return;
            }
            done[i] = true;
            for &d in &g.deps[i] {
                visit(g, d, done, out);
            }
            out.push(i);
        }
        for i in (0..self.tasks.len()).filter(|&i| selected[i]) {
            visit(self, i, &mut done, &mut out);
        }
        out
    }

    /// A cycle as a path `a, b, ..., a`, if any.
    fn find_cycle(&self) -> Option<Vec<usize>> {
        // 0 = unvisited, 1 = on the current path, 2 = finished.
        let mut color = vec![0u8; self.tasks.len()];
        let mut path: Vec<usize> = Vec::new();
        for start in 0..self.tasks.len() {
            if color[start] != 0 {
                continue;
            }
            // Iterative DFS: (node, next dep index).
            let mut stack = vec![(start, 0usize)];
            color[start] = 1;
            path.push(start);
            while let Some((node, next)) = stack.last_mut() {
                let node = *node;
                if let Some(&d) = self.deps[node].get(*next) {
                    *next += 1;
                    match color[d] {
                        0 => {
                            color[d] = 1;
                            path.push(d);
                            stack.push((d, 0));
                        }
                        1 => {
                            let from = path.iter().position(|&p| p == d).expect("on path");
                            let mut cycle = path[from..].to_vec();
                            cycle.push(d);
                            return Some(cycle);
                        }
                        _ => {}
                    }
                } else {
                    color[node] = 2;
                    path.pop();
                    stack.pop();
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_str;
    use std::path::Path;

    fn graph(src: &str) -> Result<Graph, GraphError> {
        Graph::build(parse_str(Path::new("m"), src).unwrap())
    }

    fn t(name: &str, deps: &str) -> String {
        format!("task {name} {{\n cmd = true\n deps = {deps}\n}}\n")
    }

    #[test]
    fn cycles_are_named() {
        let src = [t("a", "b"), t("b", "c"), t("c", "a"), t("d", "")].concat();
        match graph(&src).unwrap_err() {
            GraphError::Cycle(c) => assert_eq!(c, ["a", "b", "c", "a"]),
            e => panic!("{e}"),
        }
        let e = graph(&t("self", "self")).unwrap_err().to_string();
        assert_eq!(e, "dependency cycle: self -> self");
    }

    #[test]
    fn unknown_deps_and_targets() {
        let e = graph(&t("a", "ghost")).unwrap_err().to_string();
        assert!(e.contains("unknown task `ghost`"), "{e}");
        let g = graph(&[t("a", ""), t("b", "a"), t("c", "")].concat()).unwrap();
        assert!(matches!(g.select(&["zzz".into()]), Err(GraphError::UnknownTarget(_))));
        assert_eq!(g.select(&["b".into()]).unwrap(), [true, true, false]);
    }

    #[test]
    fn diamond_order() {
        let src = [t("top", "l, r"), t("l", "base"), t("r", "base"), t("base", "")].concat();
        let g = graph(&src).unwrap();
        let order = g.topo_order(&[true; 4]);
        let pos = |n: &str| order.iter().position(|&i| g.task(i).name == n).unwrap();
        assert!(pos("base") < pos("l") && pos("base") < pos("r") && pos("l") < pos("top") && pos("r") < pos("top"));
    }
}
