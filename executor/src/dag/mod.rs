//! The task graph: [`graph`] checks deps and cycles and selects targets; [`scheduler`] runs the
//! selected tasks in parallel in dependency order.

pub mod graph;
pub mod scheduler;

pub use graph::Graph;
pub use scheduler::{NodeState, Scheduler};
