//! ncp-pca-issuer: a cert-manager external issuer for NAVER Cloud Platform Private CA.
// Bad input ends in an error, never a panic: no unwrap/expect outside unit tests.
#![warn(clippy::unwrap_used, clippy::expect_used)]
pub mod api;
pub mod cli;
pub mod controller;
// Development fixtures (feature `dev`): a local etcd, kube-apiserver and cert-manager.
#[cfg(feature = "dev")]
pub mod devcluster;
pub mod emulator;
pub mod lease;
pub mod metrics;
pub mod ncp;
pub mod pki;
pub mod reason;
pub mod server;
pub mod telemetry;
pub mod watches;
