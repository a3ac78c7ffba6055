//! The cluster tests that share one control plane and one in-process operator (`support::operator()`):
//! one test binary, so the control plane starts once per run.
//!
//! Tests that inject emulator faults or count calls across CAs use an emulator of their own
//! (`support::own_emulator()`), so every test here may run concurrently with every other. Tests that
//! cannot share this control plane live in their own binaries: `tests/approval.rs` (cert-manager
//! without its approver) and `tests/operator_processes` (operator child processes that watch the
//! whole cluster); see `tests/cluster/README.md`.

#[path = "../support/mod.rs"]
mod support;

mod cluster_smoke;
mod crd_validation;
mod hostile;
mod ingress;
mod issuance;
mod issuer;
mod lease;
mod migrate;
mod recovery;
mod subordinate;
mod subordinate_outage;
