//! NAVER Cloud Platform Private CA: wire types, request signing, errors and the typed async client.

pub mod client;
pub mod error;
pub mod messages;
pub mod operation;
pub mod signing;
pub mod types;

pub use client::{CallObserver, Client, ClientConfig, NewCa, RetryPolicy};
pub use error::NcpError;
pub use operation::Operation;
pub use signing::{Credentials, SecretKey};

/// The public endpoint.
pub const PUBLIC_ENDPOINT: &str = "https://pca.apigw.ntruss.com";
/// The government-cloud endpoint.
pub const GOV_ENDPOINT: &str = "https://privateca.apigw.gov-ntruss.com";
/// The path prefix of every operation.
pub const API_PREFIX: &str = "/api/v1";
