//! Where the Private CA API lives.

/// The public endpoint.
pub const PUBLIC_ENDPOINT: &str = "https://pca.apigw.ntruss.com";
/// The government-cloud endpoint.
pub const GOV_ENDPOINT: &str = "https://privateca.apigw.gov-ntruss.com";
/// The path prefix of every operation.
pub const API_PREFIX: &str = "/api/v1";
