//! Command-line front ends that live in the library so `main.rs` stays thin.

pub mod migrate;
pub mod pca;
