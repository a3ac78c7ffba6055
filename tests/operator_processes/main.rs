//! A binary of its own: the tests in which the operator runs as a child process
//! (`ncp-pca-issuer controller`, as in production), with the chart's ServiceAccount or behind leader
//! election. Every such process watches the whole cluster, so none may run beside the in-process
//! operator of `tests/e2e` (the two would sign each other's requests, so a test could pass without
//! its own operator doing the work), nor beside another test's operator process: those tests take
//! turns on [`OPERATOR_PROCESS_TURN`]. The chart's tests that start no operator run concurrently.

#[path = "../support/mod.rs"]
mod support;

mod aggregation;
mod chart;
mod hostile;
mod lifecycle;
mod monitoring;
mod process;

/// Held by every test while an operator process of its runs.
pub static OPERATOR_PROCESS_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
