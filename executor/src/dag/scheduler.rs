//! Runs the selected tasks of a [`Graph`] with at most `jobs` at a time, each as soon as its deps
//! have succeeded. A failure skips everything that depends on it; without `keep_going` it also
//! stops starting new tasks (those already running finish). So does a stop request (SIGINT,
//! SIGTERM): the tasks already running are stopped by the exec layer, honouring the same
//! [`Shutdown`], and the rest end up [`NodeState::NotRun`].

use std::collections::VecDeque;
use std::future::Future;

use futures::stream::{FuturesUnordered, StreamExt};

use super::graph::Graph;
use crate::shutdown::Shutdown;

/// Where a task ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Not part of this run (not a target nor a dep of one).
    NotSelected,
    /// Selected but never started because the run stopped (after a failure, or on a signal).
    NotRun,
    /// A dependency failed.
    Skipped,
    /// The task function reported success.
    Succeeded,
    /// The task function reported failure.
    Failed,
}

/// Parallel, dependency-ordered execution.
pub struct Scheduler<'g> {
    graph: &'g Graph,
    /// Most tasks in flight.
    jobs: usize,
    /// Keep starting independent tasks after a failure.
    keep_going: bool,
    /// Once it fires, no task starts.
    shutdown: Shutdown,
}

impl<'g> Scheduler<'g> {
    /// A scheduler over `graph`.
    pub fn new(graph: &'g Graph, jobs: usize, keep_going: bool, shutdown: Shutdown) -> Self {
        Self {
            graph,
            jobs: jobs.max(1),
            keep_going,
            shutdown,
        }
    }

    /// Runs `task(i)` for every selected task; it returns whether the task succeeded. Returns the
    /// final state of every task of the graph.
    pub async fn run<F, Fut>(&self, selected: &[bool], mut task: F) -> Vec<NodeState>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = bool>,
    {
        let g = self.graph;
        let n = g.tasks().len();
        let mut state: Vec<Option<NodeState>> = (0..n)
            .map(|i| (!selected[i]).then_some(NodeState::NotSelected))
            .collect();
        let mut waiting: Vec<usize> = (0..n).map(|i| g.deps(i).len()).collect();
        let mut ready: VecDeque<usize> = g
            .topo_order(selected)
            .into_iter()
            .filter(|&i| waiting[i] == 0)
            .collect();
        let mut running = FuturesUnordered::new();
        let mut stopping = false;
        loop {
            while running.len() < self.jobs && !stopping && self.shutdown.signal().is_none() {
                let Some(i) = ready.pop_front() else { break };
                let fut = task(i);
                running.push(async move { (i, fut.await) });
            }
            let Some((i, ok)) = running.next().await else { break };
            if ok {
                state[i] = Some(NodeState::Succeeded);
                for &d in g.dependents(i) {
                    waiting[d] -= 1;
                    if waiting[d] == 0 && state[d].is_none() {
                        ready.push_back(d);
                    }
                }
            } else {
                state[i] = Some(NodeState::Failed);
                let mut stack: Vec<usize> = g.dependents(i).to_vec();
                while let Some(d) = stack.pop() {
                    if state[d].is_none() {
                        state[d] = Some(NodeState::Skipped);
                        stack.extend(g.dependents(d));
                    }
                }
                ready.retain(|&r| state[r].is_none());
                stopping |= !self.keep_going;
            }
        }
        state.into_iter().map(|s| s.unwrap_or(NodeState::NotRun)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_str;
    use std::cell::RefCell;
    use std::path::Path;

    fn graph(spec: &[(&str, &str)]) -> Graph {
        let src: String = spec
            .iter()
            .map(|(n, d)| format!("task {n} {{\n cmd = true\n deps = {d}\n}}\n"))
            .collect();
        Graph::build(parse_str(Path::new("m"), &src).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn failure_skips_dependents_and_keep_going_finishes_the_rest() {
        let g = graph(&[("bad", ""), ("after_bad", "bad"), ("ok1", ""), ("ok2", "ok1")]);
        let ran = RefCell::new(Vec::new());
        let run = |keep_going| {
            let s = Scheduler::new(&g, 1, keep_going, Shutdown::new());
            let ran = &ran;
            async move {
                s.run(&[true; 4], |i| {
                    ran.borrow_mut().push(i);
                    async move { i != 0 }
                })
                .await
            }
        };
        let states = run(true).await;
        use NodeState::*;
        assert_eq!(states, [Failed, Skipped, Succeeded, Succeeded]);
        ran.borrow_mut().clear();
        let states = run(false).await;
        assert_eq!(states, [Failed, Skipped, NotRun, NotRun]);
        assert_eq!(*ran.borrow(), [0]);
    }

    #[tokio::test]
    async fn deps_run_first_and_jobs_bound_concurrency() {
        let g = graph(&[
            ("top", "l, r"),
            ("l", "base"),
            ("r", "base"),
            ("base", ""),
            ("x", ""),
            ("y", ""),
        ]);
        let log = RefCell::new(Vec::new());
        let in_flight = RefCell::new((0usize, 0usize));
        let s = Scheduler::new(&g, 2, false, Shutdown::new());
        let states = s
            .run(&[true; 6], |i| {
                let (log, in_flight) = (&log, &in_flight);
                async move {
                    {
                        let mut f = in_flight.borrow_mut();
                        f.0 += 1;
                        f.1 = f.1.max(f.0);
                    }
                    tokio::task::yield_now().await;
                    log.borrow_mut().push(i);
                    in_flight.borrow_mut().0 -= 1;
                    true
                }
            })
            .await;
        assert!(states.iter().all(|s| *s == NodeState::Succeeded));
        let log = log.into_inner();
        let pos = |i: usize| log.iter().position(|&x| x == i).unwrap();
        assert!(pos(3) < pos(1) && pos(3) < pos(2) && pos(1) < pos(0) && pos(2) < pos(0));
        assert_eq!(in_flight.into_inner().1, 2);
    }

    #[tokio::test]
    async fn a_stop_request_starts_nothing_more() {
        let g = graph(&[("first", ""), ("second", "first"), ("other", "")]);
        let shutdown = Shutdown::new();
        let s = Scheduler::new(&g, 1, true, shutdown.clone());
        let ran = RefCell::new(Vec::new());
        let states = s
            .run(&[true; 3], |i| {
                ran.borrow_mut().push(i);
                shutdown.request(crate::shutdown::StopSignal::Interrupt);
                async move { true }
            })
            .await;
        use NodeState::*;
        assert_eq!(ran.into_inner().len(), 1);
        assert_eq!(states.iter().filter(|s| **s == NotRun).count(), 2, "{states:?}");
        assert_eq!(states.iter().filter(|s| **s == Succeeded).count(), 1, "{states:?}");
    }
}
