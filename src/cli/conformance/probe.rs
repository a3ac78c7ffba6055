//! Raw calls for the conformance checks: the request our client would send (or the same request
//! signed another way), and the answer as it came, so its shape can be compared before it is decoded.

use crate::ncp::signing::{self, Credentials};
use crate::ncp::{Client, ClientConfig, NcpError, Operation};
use reqwest::Url;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest answer read; a longer one is refused (no conformance answer comes near it).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// How a request is signed: our client's way (v2 over path and query) or as other clients do it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureStyle {
    /// `x-ncp-apigw-signature-v2` over the path and query (documented; what our client does).
    V2PathAndQuery,
    /// `x-ncp-apigw-signature-v2` over the path alone.
    V2PathOnly,
    /// `x-ncp-apigw-signature-v1` over the path and query.
    V1PathAndQuery,
    /// `x-ncp-apigw-signature-v1` over the path alone (NAVER's Go SDK).
    V1PathOnly,
}

impl SignatureStyle {
    /// Every style, ours first.
    pub const ALL: [Self; 4] = [
        Self::V2PathAndQuery,
        Self::V2PathOnly,
        Self::V1PathAndQuery,
        Self::V1PathOnly,
    ];

    /// Stable name (the check's name in the report).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::V2PathAndQuery => "v2_path_and_query",
            Self::V2PathOnly => "v2_path_only",
            Self::V1PathAndQuery => "v1_path_and_query",
            Self::V1PathOnly => "v1_path_only",
        }
    }

    /// Human description.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::V2PathAndQuery => "-v2 header, signed over path and query (our client)",
            Self::V2PathOnly => "-v2 header, signed over the path only",
            Self::V1PathAndQuery => "-v1 header, signed over path and query",
            Self::V1PathOnly => "-v1 header, signed over the path only (NAVER's Go SDK)",
        }
    }

    fn header(self) -> &'static str {
        match self {
            Self::V2PathAndQuery | Self::V2PathOnly => signing::HEADER_SIGNATURE_V2,
            Self::V1PathAndQuery | Self::V1PathOnly => signing::HEADER_SIGNATURE_V1,
        }
    }

    fn signs_query(self) -> bool {
        matches!(self, Self::V2PathAndQuery | Self::V1PathAndQuery)
    }
}

/// An answer as received.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The operation.
    pub op: Operation,
    /// `METHOD path?query`.
    pub request: String,
    /// HTTP status.
    pub http_status: u16,
    /// The body.
    pub bytes: Vec<u8>,
    /// The body as JSON, when it is JSON.
    pub json: Option<Value>,
}

/// Sends raw, signed requests to the endpoint of a client configuration.
#[derive(Debug, Clone)]
pub struct Probe {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
    timeout: Duration,
}

impl Probe {
    /// A probe of the endpoint `config` names, with its credentials, trust and timeouts; it follows
    /// no redirects.
    ///
    /// # Errors
    /// When the endpoint or the CA bundle is unusable (as [`Client::new`] says).
    pub fn new(config: &ClientConfig) -> Result<Self, NcpError> {
        // The client normalises the endpoint (the `/api/v1` prefix): use exactly its base.
        let base = Client::new(config.clone())?.base_url().clone();
        let invalid = |message: String| NcpError::InvalidRequest {
            op: Operation::GetCaList,
            message,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "ncp-pca-issuer-conformance/",
                env!("CARGO_PKG_VERSION")
            ));
        if let Some(pem) = &config.ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| invalid(format!("caBundle is not PEM: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| invalid(format!("cannot build http client: {e}")))?;
        Ok(Self {
            http,
            base,
            credentials: config.credentials.clone(),
            timeout: config.request_timeout,
        })
    }

    /// The endpoint's base URL, `/api/v1` included.
    #[must_use]
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// One call, signed as our client signs it.
    ///
    /// # Errors
    /// When no answer came (transport, timeout) or the arguments are unusable.
    pub async fn call(
        &self,
        op: Operation,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Answer, NcpError> {
        self.call_signed(op, segments, query, body, SignatureStyle::V2PathAndQuery)
            .await
    }

    /// One call, signed in `style`.
    ///
    /// # Errors
    /// When no answer came (transport, timeout) or the arguments are unusable.
    pub async fn call_signed(
        &self,
        op: Operation,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        style: SignatureStyle,
    ) -> Result<Answer, NcpError> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| NcpError::InvalidRequest {
                    op,
                    message: "endpoint cannot carry a path".into(),
                })?;
            for seg in segments {
                if seg.is_empty() || *seg == "." || *seg == ".." {
                    return Err(NcpError::InvalidRequest {
                        op,
                        message: format!("unusable path parameter {seg:?}"),
                    });
                }
                path.push(seg);
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().copied());
        }
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let signed = if style.signs_query() {
            target.clone()
        } else {
            url.path().to_string()
        };
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string();
        let method = op.method();
        let signature = self.credentials.sign(method.as_str(), &signed, &timestamp);
        let mut request = self
            .http
            .request(method.clone(), url)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .header(signing::HEADER_TIMESTAMP, &timestamp)
            .header(signing::HEADER_ACCESS_KEY, &self.credentials.access_key)
            .header(style.header(), signature);
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let transport = |e: &reqwest::Error| {
            if e.is_timeout() {
                NcpError::Timeout {
                    op,
                    timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                }
            } else if e.is_connect() {
                NcpError::Connect {
                    op,
                    message: e.to_string(),
                }
            } else {
                NcpError::Transport {
                    op,
                    message: e.to_string(),
                }
            }
        };
        let mut response = request.send().await.map_err(|e| transport(&e))?;
        let http_status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e))? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(NcpError::Decode {
                    op,
                    http_status,
                    message: format!("answer longer than {MAX_ANSWER_BYTES} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let json = serde_json::from_slice(&bytes).ok();
        Ok(Answer {
            op,
            request: format!("{method} {target}"),
            http_status,
            bytes,
            json,
        })
    }
}
