//! Counters for tests: calls per operation by outcome, certificates issued.

use crate::ncp::operation::Operation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Outcomes of the calls to one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCounts {
    /// Every call that routed to the operation.
    pub total: u64,
    /// Calls whose operation ran and succeeded (including those whose answer was then withheld).
    pub success: u64,
    /// Calls answered with a service error envelope (including injected 500s).
    pub error: u64,
    /// Calls stopped at the gateway: authentication failures, injected 429/503.
    pub rejected: u64,
    /// Calls that never got an answer (injected timeouts and lost responses).
    pub lost: u64,
}

/// A snapshot of the emulator's counters. JSON of `GET /_emulator/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// By [`Operation::name`].
    pub calls: BTreeMap<String, CallCounts>,
    /// Certificates signed (end-entity and CA certificates, by any operation).
    pub certificates_issued_total: u64,
    /// Certificates signed, by the caTag of the signing CA.
    pub certificates_issued_per_ca: BTreeMap<String, u64>,
    /// Faults applied.
    pub faults_injected: u64,
}

impl Stats {
    /// The counts of one operation.
    #[must_use]
    pub fn calls(&self, op: Operation) -> CallCounts {
        self.calls.get(op.name()).copied().unwrap_or_default()
    }

    /// Certificates signed by one CA.
    #[must_use]
    pub fn issued_by(&self, ca_tag: &str) -> u64 {
        self.certificates_issued_per_ca
            .get(ca_tag)
            .copied()
            .unwrap_or_default()
    }

    pub(crate) fn entry(&mut self, op: Operation) -> &mut CallCounts {
        self.calls.entry(op.name().to_string()).or_default()
    }

    pub(crate) fn issued(&mut self, ca_tag: &str) {
        self.certificates_issued_total += 1;
        *self
            .certificates_issued_per_ca
            .entry(ca_tag.to_string())
            .or_default() += 1;
    }
}
