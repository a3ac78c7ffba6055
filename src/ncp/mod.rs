//! NAVER Cloud Platform Private CA: wire types, request signing, errors and the typed async client.

pub mod client;
pub mod endpoint;
pub mod error;
pub mod messages;
pub mod operation;
pub mod signing;
pub mod types;

pub use client::{CallObserver, Client, ClientConfig, NewCa, RetryPolicy};
pub use endpoint::{API_PREFIX, GOV_ENDPOINT, PUBLIC_ENDPOINT};
pub use error::NcpError;
pub use operation::Operation;
pub use signing::{Credentials, SecretKey};
