//! The typed async client: one method per Private CA operation, signed with HMAC v2, with bounded
//! retries that never repeat a call which may already have created something.

use super::endpoint::{API_PREFIX, PUBLIC_ENDPOINT};
use super::error::NcpError;
use super::operation::Operation;
use super::signing::{self, Credentials};
use super::types::{
    ActivateSubCaRequest, AddCaUserRequest, CaDetail, CaList, CaStatus, CaType, CaUser, Complete,
    CreateCaRequest, CreateOcspRequest, CrlConfig, EndCert, EndCertList, Envelope,
    GatewayErrorBody, IssueEndCertRequest, IssuedCert, KeyType, Period, SUCCESS, SignCsrRequest,
    SubCsr, UpdateCaRequest, UpdatedCa, X509Parameters,
};
use rand::Rng as _;
use reqwest::Url;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bounded exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the second attempt.
    pub initial_backoff: Duration,
    /// Largest backoff, also the cap on a server's `Retry-After`.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    #[must_use]
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before attempt `attempt + 1` (`attempt` starts at 1), honouring `Retry-After`.
    #[must_use]
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_backoff);
        }
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        // Full jitter: anywhere between half and all of the exponential step.
        let half = exp / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }
}

/// Receives one observation per HTTP attempt (for metrics).
pub trait CallObserver: Send + Sync {
    /// `outcome` is `"success"` or the error's reason.
    fn observe(&self, op: Operation, outcome: &str, elapsed: Duration);
}

/// How to reach the service.
#[derive(Clone)]
pub struct ClientConfig {
    /// Base URL without `/api/v1` (it is accepted with it too), e.g. `https://pca.apigw.ntruss.com`.
    pub endpoint: String,
    /// Access key and secret key.
    pub credentials: Credentials,
    /// Extra PEM trust anchors for the endpoint's TLS certificate.
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// Timeout of one HTTP attempt.
    pub request_timeout: Duration,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout of each read from the connection (the answer's head, then every chunk of its body).
    pub read_timeout: Duration,
    /// Largest answer body read; a longer one is cut off while it is read (never buffered whole).
    pub max_answer_bytes: usize,
    /// Retries of retryable failures.
    pub retry: RetryPolicy,
}

/// Default largest answer body: NCP's largest answers (a CA chain, a CRL, a page of a list) are a few
/// tens of KiB.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Default timeout of each read from the connection.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest text kept from an answer's `msg`, `message`, `details` or `errorCode`.
pub const MAX_ANSWER_TEXT: usize = 300;

impl ClientConfig {
    /// A configuration for the public endpoint with default timeouts and retries.
    #[must_use]
    pub fn new(credentials: Credentials) -> Self {
        Self {
            endpoint: PUBLIC_ENDPOINT.to_string(),
            credentials,
            ca_bundle_pem: None,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            retry: RetryPolicy::default(),
        }
    }

    /// Sets the endpoint.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials)
            .field("ca_bundle_pem", &self.ca_bundle_pem.as_ref().map(Vec::len))
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_answer_bytes", &self.max_answer_bytes)
            .field("retry", &self.retry)
            .finish()
    }
}

/// The Private CA client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
    retry: RetryPolicy,
    request_timeout: Duration,
    read_timeout: Duration,
    max_answer_bytes: usize,
    observer: Option<Arc<dyn CallObserver>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("credentials", &self.credentials)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// What a new CA should be (Create CA).
#[derive(Debug, Clone)]
pub struct NewCa {
    /// Root or intermediate.
    pub ca_type: CaType,
    /// Parent CA for an intermediate signed at once; `None` for a root or a self-signed-later intermediate.
    pub issuer_tag: Option<String>,
    /// Name, 3-15 characters.
    pub alias: String,
    /// Free text.
    pub memo: Option<String>,
    /// Key type.
    pub key_type: KeyType,
    /// Validity.
    pub period: Period,
    /// Subject.
    pub subject: X509Parameters,
}

/// Refuses a path parameter that would not reach its operation: empty, or a dot segment (`.` and `..`
/// are removed by URL normalisation, here and in every proxy on the way, so the request would go to
/// another operation; percent-encoding them does not help, `%2E` is normalised too).
fn check_path_parameter(op: Operation, segment: &str) -> Result<(), NcpError> {
    match segment {
        "" => Err(invalid(op, "empty path parameter")),
        "." | ".." => Err(invalid(
            op,
            format!(
                "path parameter {segment:?} is a dot segment and would reach another operation"
            ),
        )),
        s if s.chars().any(char::is_control) => Err(invalid(
            op,
            format!("path parameter {s:?} contains a control character"),
        )),
        _ => Ok(()),
    }
}

/// Builds the client error for an unusable argument.
fn invalid(op: Operation, message: impl Into<String>) -> NcpError {
    NcpError::InvalidRequest {
        op,
        message: message.into(),
    }
}

impl Client {
    /// Builds a client.
    ///
    /// # Errors
    /// When the endpoint is not an http(s) URL or the CA bundle is not PEM.
    pub fn new(config: ClientConfig) -> Result<Self, NcpError> {
        let op = Operation::GetCaList;
        let mut base = Url::parse(config.endpoint.trim()).map_err(|e| {
            invalid(
                op,
                format!("endpoint {:?} is not a URL: {e}", config.endpoint),
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(invalid(
                op,
                format!("endpoint {:?} must be an http(s) URL", config.endpoint),
            ));
        }
        let path = base.path().trim_end_matches('/').to_string();
        let path = path.strip_suffix(API_PREFIX).unwrap_or(&path).to_string();
        base.set_path(&format!("{path}{API_PREFIX}"));
        base.set_query(None);
        base.set_fragment(None);

        // Every answer is hostile input (the endpoint is user-set): no redirect is followed (it would
        // carry the signed headers elsewhere, and read back any URL the controller can reach), and
        // every read is bounded in time.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ncp-pca-issuer/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| invalid(op, format!("caBundle is not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(invalid(op, "caBundle holds no certificate"));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| invalid(op, format!("cannot build http client: {e}")))?;
        Ok(Self {
            http,
            base,
            credentials: config.credentials,
            retry: config.retry,
            request_timeout: config.request_timeout,
            read_timeout: config.read_timeout,
            max_answer_bytes: config.max_answer_bytes,
            observer: None,
        })
    }

    /// Reports every HTTP attempt to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The base URL, `/api/v1` included.
    #[must_use]
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The access key in use (not secret).
    #[must_use]
    pub fn access_key(&self) -> &str {
        &self.credentials.access_key
    }

    fn url(
        &self,
        op: Operation,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Url, NcpError> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| invalid(op, "endpoint cannot carry a path"))?;
            for seg in segments {
                check_path_parameter(op, seg)?;
                path.push(seg);
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// One operation with retries; returns the envelope's `data`.
    async fn call<T: DeserializeOwned>(
        &self,
        op: Operation,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<Option<T>, NcpError> {
        let url = self.url(op, segments, query)?;
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| invalid(op, format!("cannot encode body: {e}")))?;
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let result = self.attempt::<T>(op, &url, body.as_deref()).await;
            if let Some(observer) = &self.observer {
                let outcome = match &result {
                    Ok(_) => "success",
                    Err(e) => e.reason().as_str(),
                };
                observer.observe(op, outcome, started.elapsed());
            }
            let err = match result {
                Ok(data) => return Ok(data),
                Err(e) => e,
            };
            let may_repeat =
                err.is_retryable() && (op.is_idempotent() || err.certainly_not_applied());
            if !may_repeat || attempt >= self.retry.max_attempts {
                return Err(err);
            }
            let wait = self
                .retry
                .backoff(attempt, err.retry_after_secs().map(Duration::from_secs));
            tracing::debug!(operation = %op, attempt, error = %err, wait_ms = wait.as_millis(), "retrying ncp call");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        op: Operation,
        url: &Url,
        body: Option<&[u8]>,
    ) -> Result<Option<T>, NcpError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string();
        // Sign exactly the request-target that goes on the wire.
        let request_uri = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let method = op.method();
        let signature = self
            .credentials
            .sign(method.as_str(), &request_uri, &timestamp);
        let mut request = self
            .http
            .request(method, url.clone())
            .timeout(self.request_timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .header(signing::HEADER_TIMESTAMP, &timestamp)
            .header(signing::HEADER_ACCESS_KEY, &self.credentials.access_key)
            .header(signing::HEADER_SIGNATURE_V2, signature);
        if let Some(body) = body {
            request = request.body(body.to_vec());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| self.transport_error(op, &e))?;
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            return Err(NcpError::Redirected {
                op,
                http_status: status,
            });
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let content_type = AnswerShape::content_type_of(response.headers());
        let too_large = |received: Option<u64>| NcpError::AnswerTooLarge {
            op,
            http_status: status,
            limit_bytes: self.max_answer_bytes as u64,
            received_bytes: received,
        };
        let limit = self.max_answer_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(too_large(response.content_length()));
        }
        // Read chunk by chunk, so a longer answer is cut off at the limit, never held whole.
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(op, &e))?
        {
            if bytes.len() + chunk.len() > limit {
                return Err(too_large(None));
            }
            bytes.extend_from_slice(&chunk);
        }
        let shape = AnswerShape {
            http_status: status,
            content_type,
            length: bytes.len(),
        };
        decode_answer(op, &shape, retry_after, &bytes)
    }

    fn transport_error(&self, op: Operation, e: &reqwest::Error) -> NcpError {
        // Walk the source chain so the cause is named once, without the URL's noise.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        if self.base.scheme() == "https" && looks_like_plain_http(&message) {
            message = format!(
                "the endpoint did not answer in TLS; is {} a plain http:// endpoint? ({message})",
                self.base.origin().ascii_serialization()
            );
        }
        if e.is_connect() {
            NcpError::Connect { op, message }
        } else if e.is_timeout() {
            NcpError::Timeout {
                op,
                timeout_ms: u64::try_from(self.request_timeout.min(self.read_timeout).as_millis())
                    .unwrap_or(u64::MAX),
            }
        } else {
            NcpError::Transport { op, message }
        }
    }

    async fn call_data<T: DeserializeOwned + Complete>(
        &self,
        op: Operation,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<T, NcpError> {
        let data: T =
            self.call(op, segments, query, body)
                .await?
                .ok_or_else(|| NcpError::Decode {
                    op,
                    http_status: 200,
                    message: "successful answer without data".into(),
                })?;
        // An answer without what the operation must return is not an empty object: it is most likely
        // the answer of another operation, or a broken one.
        match data.missing() {
            None => Ok(data),
            Some(field) => Err(NcpError::Decode {
                op,
                http_status: 200,
                message: format!("successful answer without {field}"),
            }),
        }
    }

    async fn call_unit(
        &self,
        op: Operation,
        segments: &[&str],
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<(), NcpError> {
        self.call::<serde_json::Value>(op, segments, &[], body)
            .await
            .map(|_| ())
    }

    // ---- the 24 operations, in alphabetical order ------------------------------------------------

    /// Activate Sub CA: uploads the signed certificate of a PENDING intermediate and its signer's chain.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn activate_sub_ca(
        &self,
        ca_tag: &str,
        cert_pem: &str,
        ca_chain_pem: &str,
    ) -> Result<CaDetail, NcpError> {
        let body = ActivateSubCaRequest {
            cert_pem: Some(cert_pem.to_string()),
            ca_chain_pem: Some(ca_chain_pem.to_string()),
        };
        self.call_data(
            Operation::ActivateSubCa,
            &["ca", ca_tag, "activate"],
            &[],
            Some(&body),
        )
        .await
    }

    /// Add CA User: grants a sub account rights on the CA.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn add_ca_user(&self, ca_tag: &str, id_no: &str) -> Result<(), NcpError> {
        let body = AddCaUserRequest {
            id_no: Some(id_no.to_string()),
        };
        self.call_unit(Operation::AddCaUser, &["ca", ca_tag, "users"], Some(&body))
            .await
    }

    /// Create CA. Never retried after an ambiguous failure: a repeat could create a second CA.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn create_ca(&self, new: &NewCa) -> Result<CaDetail, NcpError> {
        let mut query = vec![("caType", new.ca_type.as_str().to_string())];
        if let Some(parent) = &new.issuer_tag {
            query.push(("issuerTag", parent.clone()));
        }
        let body = CreateCaRequest {
            alias: Some(new.alias.clone()),
            memo: new.memo.clone(),
            key_type: Some(new.key_type.as_str().to_string()),
            period: Some(new.period.to_wire()),
            x509_parameters: Some(new.subject.clone()),
        };
        self.call_data(Operation::CreateCa, &["ca"], &query, Some(&body))
            .await
    }

    /// Create OCSP: sets the OCSP responder URL put into the CA's certificates.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn create_ocsp(&self, ca_tag: &str, ocsp_servers: &str) -> Result<(), NcpError> {
        let body = CreateOcspRequest {
            ocsp_servers: Some(ocsp_servers.to_string()),
        };
        self.call_unit(Operation::CreateOcsp, &["ca", ca_tag, "urls"], Some(&body))
            .await
    }

    /// Delete CA (only a DESTROYING CA).
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn delete_ca(&self, ca_tag: &str) -> Result<(), NcpError> {
        self.call_unit(Operation::DeleteCa, &["ca", ca_tag], None::<&()>)
            .await
    }

    /// Delete CA User.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn delete_ca_user(&self, ca_tag: &str, id_no: &str) -> Result<(), NcpError> {
        self.call_unit(
            Operation::DeleteCaUser,
            &["ca", ca_tag, "users", id_no],
            None::<&()>,
        )
        .await
    }

    /// Delete OCSP.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn delete_ocsp(&self, ca_tag: &str) -> Result<(), NcpError> {
        self.call_unit(Operation::DeleteOcsp, &["ca", ca_tag, "urls"], None::<&()>)
            .await
    }

    /// Get CA.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn get_ca(&self, ca_tag: &str) -> Result<CaDetail, NcpError> {
        self.call_data(Operation::GetCa, &["ca", ca_tag], &[], None::<&()>)
            .await
    }

    /// Get CA Chain: the CA's chain as concatenated PEM.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn get_ca_chain(&self, ca_tag: &str) -> Result<String, NcpError> {
        self.call_data(
            Operation::GetCaChain,
            &["ca", ca_tag, "chain"],
            &[],
            None::<&()>,
        )
        .await
    }

    /// Get CA CRL: the current CRL, PEM.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn get_ca_crl(&self, ca_tag: &str) -> Result<String, NcpError> {
        self.call_data(
            Operation::GetCaCrl,
            &["ca", ca_tag, "crl"],
            &[],
            None::<&()>,
        )
        .await
    }

    /// Get CA List: one page (1-based; `None` = the service's default, the first).
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn get_ca_list(&self, page_no: Option<u32>) -> Result<CaList, NcpError> {
        let query: Vec<_> = page_no
            .map(|p| ("pageNo", p.to_string()))
            .into_iter()
            .collect();
        self.call_data(Operation::GetCaList, &["ca"], &query, None::<&()>)
            .await
    }

    /// Every CA, walking all pages of Get CA List.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn list_all_cas(&self) -> Result<Vec<CaDetail>, NcpError> {
        let mut all = Vec::new();
        let mut page = 1;
        loop {
            let list = self.get_ca_list(Some(page)).await?;
            let empty = list.ca_info_list.is_empty();
            all.extend(list.ca_info_list);
            if empty || i64::from(page) >= list.total_page_no {
                return Ok(all);
            }
            page += 1;
        }
    }

    /// Get CA User List.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn get_ca_user_list(&self, ca_tag: &str) -> Result<Vec<CaUser>, NcpError> {
        Ok(self
            .call(
                Operation::GetCaUserList,
                &["ca", ca_tag, "users"],
                &[],
                None::<&()>,
            )
            .await?
            .unwrap_or_default())
    }

    /// Get CRL Config.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn get_crl_config(&self, ca_tag: &str) -> Result<CrlConfig, NcpError> {
        self.call_data(
            Operation::GetCrlConfig,
            &["ca", ca_tag, "crl", "config"],
            &[],
            None::<&()>,
        )
        .await
    }

    /// Get End Cert.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn get_end_cert(&self, ca_tag: &str, serial_no: &str) -> Result<EndCert, NcpError> {
        self.call_data(
            Operation::GetEndCert,
            &["ca", ca_tag, "cert", serial_no],
            &[],
            None::<&()>,
        )
        .await
    }

    /// Get End Cert List: one page of serials (1-based; `None` = the first).
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn get_end_cert_list(
        &self,
        ca_tag: &str,
        page_no: Option<u32>,
    ) -> Result<EndCertList, NcpError> {
        let query: Vec<_> = page_no
            .map(|p| ("pageNo", p.to_string()))
            .into_iter()
            .collect();
        self.call_data(
            Operation::GetEndCertList,
            &["ca", ca_tag, "cert"],
            &query,
            None::<&()>,
        )
        .await
    }

    /// Every serial the CA has issued, walking all pages of Get End Cert List.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn list_all_end_cert_serials(&self, ca_tag: &str) -> Result<Vec<String>, NcpError> {
        let mut all = Vec::new();
        let mut page = 1;
        loop {
            let list = self.get_end_cert_list(ca_tag, Some(page)).await?;
            let empty = list.list_certs.is_empty();
            all.extend(list.list_certs);
            if empty || i64::from(page) >= list.total_page_no {
                return Ok(all);
            }
            page += 1;
        }
    }

    /// Get Sub CSR: the CSR of a PENDING intermediate.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn get_sub_csr(&self, ca_tag: &str) -> Result<SubCsr, NcpError> {
        self.call_data(
            Operation::GetSubCsr,
            &["ca", ca_tag, "sub", "csr"],
            &[],
            None::<&()>,
        )
        .await
    }

    /// Issue End Cert: the service generates the key and the certificate. Never retried after an
    /// ambiguous failure.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn issue_end_cert(
        &self,
        ca_tag: &str,
        key_type: KeyType,
        period: Period,
        subject: &X509Parameters,
    ) -> Result<IssuedCert, NcpError> {
        let body = IssueEndCertRequest {
            key_type: Some(key_type.as_str().to_string()),
            period: Some(period.to_wire()),
            x509_parameters: Some(subject.clone()),
        };
        self.call_data(
            Operation::IssueEndCert,
            &["ca", ca_tag, "cert"],
            &[],
            Some(&body),
        )
        .await
    }

    /// Revoke End Cert.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn revoke_end_cert(&self, ca_tag: &str, serial_no: &str) -> Result<(), NcpError> {
        self.call_unit(
            Operation::RevokeEndCert,
            &["ca", ca_tag, "cert", serial_no, "revoke"],
            None::<&()>,
        )
        .await
    }

    /// Rotate CRL.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn rotate_crl(&self, ca_tag: &str) -> Result<(), NcpError> {
        self.call_unit(
            Operation::RotateCrl,
            &["ca", ca_tag, "crl", "rotate"],
            None::<&()>,
        )
        .await
    }

    /// Sign End Csr: an end-entity certificate for a CSR. Never retried after an ambiguous failure.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn sign_end_csr(
        &self,
        ca_tag: &str,
        csr_pem: &str,
        period: Option<Period>,
    ) -> Result<IssuedCert, NcpError> {
        let body = SignCsrRequest {
            csr_pem: Some(csr_pem.to_string()),
            period: period.map(Period::to_wire),
            ..SignCsrRequest::default()
        };
        self.call_data(
            Operation::SignEndCsr,
            &["ca", ca_tag, "cert", "sign"],
            &[],
            Some(&body),
        )
        .await
    }

    /// Sign Sub Csr: an intermediate CA certificate for a CSR. Never retried after an ambiguous failure.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn sign_sub_csr(
        &self,
        ca_tag: &str,
        csr_pem: &str,
        period_days: u32,
    ) -> Result<IssuedCert, NcpError> {
        let body = SignCsrRequest {
            csr_pem: Some(csr_pem.to_string()),
            period: Some(period_days.to_string()),
            ..SignCsrRequest::default()
        };
        self.call_data(
            Operation::SignSubCsr,
            &["ca", ca_tag, "sub", "sign"],
            &[],
            Some(&body),
        )
        .await
    }

    /// Trim CA: drops expired certificates.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn trim_ca(&self, ca_tag: &str) -> Result<(), NcpError> {
        self.call_unit(Operation::TrimCa, &["ca", ca_tag, "trim"], None::<&()>)
            .await
    }

    /// Update CA: status (ACTIVE, DEACTIVATED, DESTROYING) and/or memo.
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn update_ca(
        &self,
        ca_tag: &str,
        status: Option<&CaStatus>,
        memo: Option<&str>,
    ) -> Result<UpdatedCa, NcpError> {
        let body = UpdateCaRequest {
            status: status.map(|s| s.as_str().to_string()),
            memo: memo.map(str::to_string),
        };
        self.call_data(Operation::UpdateCa, &["ca", ca_tag], &[], Some(&body))
            .await
    }

    /// Update CRL Config: the CRL renewal period in days (at least 3).
    ///
    /// # Errors
    /// Any [`NcpError`].
    pub async fn update_crl_config(
        &self,
        ca_tag: &str,
        expiry_days: u32,
    ) -> Result<CrlConfig, NcpError> {
        let body = CrlConfig {
            expiry: Some(expiry_days.to_string()),
        };
        Ok(self
            .call(
                Operation::UpdateCrlConfig,
                &["ca", ca_tag, "crl", "config"],
                &[],
                Some(&body),
            )
            .await?
            .unwrap_or(body))
    }
}

/// Whether a TLS failure is what rustls reports when the server answers in plain HTTP.
fn looks_like_plain_http(message: &str) -> bool {
    [
        "InvalidContentType",
        "corrupt message",
        "wrong version number",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// What an answer looked like, for messages that describe it without echoing it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AnswerShape {
    http_status: u16,
    /// The `Content-Type` (sanitised and capped), `None` when absent.
    content_type: Option<String>,
    /// Bytes of the body.
    length: usize,
}

impl AnswerShape {
    fn content_type_of(headers: &reqwest::header::HeaderMap) -> Option<String> {
        headers
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| sanitize_text(&String::from_utf8_lossy(v.as_bytes()), 80))
    }

    /// `http 502, content type text/html, 1234 bytes`.
    fn describe(&self) -> String {
        format!(
            "content type {}, {} bytes",
            self.content_type.as_deref().unwrap_or("none"),
            self.length
        )
    }
}

/// Text from an answer, fit to be shown: control characters replaced by spaces, cut to `max`
/// characters (an ellipsis marks the cut).
#[must_use]
pub fn sanitize_text(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// A serde error about a decoded answer without the answer's own text: serde quotes the values it
/// did not expect (`invalid type: string "…"`, ``unknown variant `…` ``), and those come from the
/// endpoint.
fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len());
    let mut quote: Option<char> = None;
    let unknown = text.starts_with("unknown variant") || text.starts_with("unknown field");
    let mut backticks_seen = 0;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if c == '"' => {
                out.push(c);
                quote = Some(c);
            }
            // Only the first backticked name of an "unknown …" message is the answer's.
            None if c == '`' && unknown && backticks_seen == 0 => {
                backticks_seen += 1;
                out.push(c);
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    sanitize_text(&out, MAX_ANSWER_TEXT)
}

/// Turns a raw HTTP answer into the envelope's data or a typed error, as this client would (public
/// for `pca conformance`, which judges raw answers by what this client makes of them).
///
/// # Errors
/// The answer's [`NcpError`]: a service or gateway error, or an answer that cannot be decoded.
pub fn decode_raw_answer<T: DeserializeOwned>(
    op: Operation,
    http_status: u16,
    retry_after_secs: Option<u64>,
    bytes: &[u8],
) -> Result<Option<T>, NcpError> {
    let shape = AnswerShape {
        http_status,
        content_type: None,
        length: bytes.len(),
    };
    decode_answer(op, &shape, retry_after_secs, bytes)
}

/// Turns an HTTP answer into the envelope's data or a typed error. No text of the body goes into an
/// error but the service's and gateway's own fields, sanitised and capped ([`sanitize_text`]).
fn decode_answer<T: DeserializeOwned>(
    op: Operation,
    shape: &AnswerShape,
    retry_after_secs: Option<u64>,
    bytes: &[u8],
) -> Result<Option<T>, NcpError> {
    let http_status = shape.http_status;
    let decode_error = |message: String| NcpError::Decode {
        op,
        http_status,
        message,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|_| decode_error(format!("not json ({})", shape.describe())))?;
    if value.get("error").is_some() {
        let body: GatewayErrorBody = serde_json::from_value(value).map_err(|e| {
            decode_error(format!(
                "gateway error body: {} ({})",
                describe_json_error(&e),
                shape.describe()
            ))
        })?;
        return Err(NcpError::Gateway {
            op,
            http_status,
            error_code: sanitize_text(&body.error.error_code, 40),
            message: sanitize_text(&body.error.message, MAX_ANSWER_TEXT),
            details: body
                .error
                .details
                .map(|d| sanitize_text(&d, MAX_ANSWER_TEXT)),
            retry_after_secs,
        });
    }
    let envelope: Envelope<serde_json::Value> = serde_json::from_value(value).map_err(|e| {
        decode_error(format!(
            "envelope: {} ({})",
            describe_json_error(&e),
            shape.describe()
        ))
    })?;
    if envelope.code != SUCCESS || !(200..300).contains(&http_status) {
        return Err(NcpError::Service {
            op,
            http_status,
            known: super::messages::by_msg(&envelope.msg).map(|m| m.id),
            code: sanitize_text(&envelope.code, 80),
            msg: sanitize_text(&envelope.msg, MAX_ANSWER_TEXT),
        });
    }
    match envelope.data {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(data) => serde_json::from_value(data)
            .map(Some)
            .map_err(|e| decode_error(format!("data: {}", describe_json_error(&e)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(http_status: u16) -> AnswerShape {
        AnswerShape {
            http_status,
            content_type: Some("application/json".into()),
            length: 0,
        }
    }

    fn client(endpoint: &str) -> Result<Client, NcpError> {
        Client::new(ClientConfig::new(Credentials::new("ak", "sk")).with_endpoint(endpoint))
    }

    #[test]
    fn endpoint_gets_the_api_prefix_once() {
        assert_eq!(
            client("https://pca.apigw.ntruss.com")
                .unwrap()
                .base_url()
                .as_str(),
            "https://pca.apigw.ntruss.com/api/v1"
        );
        assert_eq!(
            client("https://pca.apigw.ntruss.com/api/v1/")
                .unwrap()
                .base_url()
                .path(),
            "/api/v1"
        );
        assert_eq!(
            client("http://127.0.0.1:8080/")
                .unwrap()
                .base_url()
                .as_str(),
            "http://127.0.0.1:8080/api/v1"
        );
    }

    #[test]
    fn endpoint_that_is_not_http_is_refused() {
        assert!(matches!(
            client("ftp://x"),
            Err(NcpError::InvalidRequest { .. })
        ));
        assert!(matches!(
            client("not a url"),
            Err(NcpError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn ca_bundle_that_is_not_pem_is_refused() {
        let mut config = ClientConfig::new(Credentials::new("ak", "sk"));
        config.ca_bundle_pem = Some(b"garbage".to_vec());
        assert!(matches!(
            Client::new(config),
            Err(NcpError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn path_parameters_are_encoded_and_the_query_is_kept_for_signing() {
        let c = client("http://127.0.0.1:1").unwrap();
        let url = c
            .url(
                Operation::GetEndCert,
                &["ca", "a/b", "cert", "0a:1b"],
                &[("pageNo", "2".into())],
            )
            .unwrap();
        assert_eq!(url.path(), "/api/v1/ca/a%2Fb/cert/0a:1b");
        assert_eq!(url.query(), Some("pageNo=2"));
        assert!(c.url(Operation::GetCa, &["ca", ""], &[]).is_err());
    }

    #[test]
    fn dot_segments_and_control_characters_are_refused_in_every_path_parameter() {
        let c = client("http://127.0.0.1:1").unwrap();
        for bad in [".", "..", "a\nb"] {
            let err = c.url(Operation::GetCa, &["ca", bad], &[]).unwrap_err();
            assert!(matches!(err, NcpError::InvalidRequest { .. }), "{bad:?}");
            assert!(!err.is_retryable());
            let err = c
                .url(Operation::GetEndCert, &["ca", "t", "cert", bad], &[])
                .unwrap_err();
            assert!(matches!(err, NcpError::InvalidRequest { .. }), "{bad:?}");
        }
        // Dots inside a parameter are fine.
        assert_eq!(
            c.url(Operation::GetCa, &["ca", "a..b"], &[])
                .unwrap()
                .path(),
            "/api/v1/ca/a..b"
        );
    }

    #[test]
    fn a_success_answer_without_what_the_operation_returns_is_a_decode_error() {
        let empty: Option<CaDetail> = decode_answer(
            Operation::GetCa,
            &shape(200),
            None,
            br#"{"code":"SUCCESS","msg":"Success","data":{"totalCnt":0,"caInfoList":[]}}"#,
        )
        .unwrap();
        assert_eq!(
            empty.unwrap().missing(),
            Some("caInfo.caTag"),
            "a CA list decoded as a CA is incomplete"
        );
        let list: Option<super::super::types::EndCertList> = decode_answer(
            Operation::GetEndCertList,
            &shape(200),
            None,
            br#"{"code":"SUCCESS","msg":"Success","data":{"totalCnt":0,"listCerts":[]}}"#,
        )
        .unwrap();
        assert_eq!(list.unwrap().missing(), None);
    }

    #[test]
    fn success_envelope_yields_its_data() {
        let data: Option<String> = decode_answer(
            Operation::GetCaChain,
            &shape(200),
            None,
            br#"{"code":"SUCCESS","msg":"Success","data":"pem"}"#,
        )
        .unwrap();
        assert_eq!(data.as_deref(), Some("pem"));
        let none: Option<String> = decode_answer(
            Operation::TrimCa,
            &shape(200),
            None,
            br#"{"code":"SUCCESS","msg":"Success","data":null}"#,
        )
        .unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn service_error_envelope_keeps_code_and_message_verbatim() {
        let err = decode_answer::<serde_json::Value>(
            Operation::GetCa,
            &shape(400),
            None,
            br#"{"code":"NOT_FOUND","msg":"The CA doesn't exist.","data":null}"#,
        )
        .unwrap_err();
        assert!(err.is_ca_not_found());
        assert!(!err.is_retryable());
    }

    #[test]
    fn gateway_error_carries_retry_after() {
        let err = decode_answer::<serde_json::Value>(
            Operation::SignEndCsr,
            &shape(429),
            Some(3),
            br#"{"error":{"errorCode":"410","message":"Throttle Limited"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.retry_after_secs(), Some(3));
        assert!(err.is_retryable());
        assert!(err.certainly_not_applied());
    }

    #[test]
    fn html_error_page_from_a_proxy_is_a_retryable_decode_error() {
        let err = decode_answer::<serde_json::Value>(
            Operation::GetCa,
            &shape(502),
            None,
            b"<html>bad gateway</html>",
        )
        .unwrap_err();
        assert!(matches!(err, NcpError::Decode { .. }));
        assert!(err.is_retryable());
    }

    async fn hostile(
        rule: crate::emulator::FaultRule,
    ) -> (crate::emulator::EmulatorHandle, Client) {
        let emu = crate::emulator::spawn(crate::emulator::EmulatorConfig::new(Credentials::new(
            "ak", "sk",
        )))
        .await
        .unwrap();
        emu.add_fault(rule);
        let mut config =
            ClientConfig::new(Credentials::new("ak", "sk")).with_endpoint(emu.base_url());
        config.retry = RetryPolicy::none();
        config.max_answer_bytes = 1024 * 1024;
        config.read_timeout = Duration::from_millis(500);
        let client = Client::new(config).unwrap();
        (emu, client)
    }

    #[tokio::test]
    async fn a_huge_answer_is_cut_off_at_the_limit_while_it_is_read() {
        // 64 MiB, streamed without a length: the client stops after its 1 MiB.
        let (emu, client) = hostile(crate::emulator::FaultRule::huge_body(64 * 1024 * 1024)).await;
        let started = Instant::now();
        let err = client.get_ca("t").await.unwrap_err();
        assert!(
            matches!(
                err,
                NcpError::AnswerTooLarge {
                    http_status: 200,
                    limit_bytes: 1_048_576,
                    received_bytes: None,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        emu.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_and_says_so() {
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let location = format!("http://{}/elsewhere", target.local_addr().unwrap());
        let (emu, client) = hostile(crate::emulator::FaultRule::redirect(location)).await;
        let err = client.get_ca("t").await.unwrap_err();
        assert!(
            matches!(
                err,
                NcpError::Redirected {
                    http_status: 302,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        // Nobody connected to where the redirect pointed.
        let accepted = tokio::time::timeout(Duration::from_millis(200), target.accept()).await;
        assert!(accepted.is_err(), "the redirect was followed");
        emu.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_non_json_answer_is_described_and_never_echoed() {
        let (emu, client) = hostile(crate::emulator::FaultRule::non_json_body(
            "<html>SECRET-PAGE-TEXT</html>",
        ))
        .await;
        let err = client.get_ca("t").await.unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(
            text.contains("not json (content type text/html; charset=utf-8, 29 bytes)"),
            "{text}"
        );
        emu.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn an_endpoint_that_stops_sending_hits_the_read_timeout() {
        let (emu, client) = hostile(crate::emulator::FaultRule::new(
            crate::emulator::FaultKind::Timeout,
        ))
        .await;
        let started = Instant::now();
        let err = client.get_ca("t").await.unwrap_err();
        assert!(matches!(err, NcpError::Timeout { .. }), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the 30 s request timeout was waited for: {:?}",
            started.elapsed()
        );
        emu.shutdown().await.unwrap();
    }

    #[test]
    fn gateway_and_service_text_is_capped_and_stripped_of_control_characters() {
        let long = "x".repeat(5000);
        let body = serde_json::json!({"error": {"errorCode": "200\n", "message": format!("line1\nline2\u{1b}[31m{long}"), "details": long}});
        let err = decode_answer::<serde_json::Value>(
            Operation::GetCa,
            &shape(401),
            None,
            body.to_string().as_bytes(),
        )
        .unwrap_err();
        let NcpError::Gateway {
            message, details, ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert!(message.starts_with("line1 line2 [31m"), "{message}");
        assert!(!message.chars().any(char::is_control));
        assert!(message.chars().count() <= MAX_ANSWER_TEXT + 1);
        assert!(details.as_ref().unwrap().chars().count() <= MAX_ANSWER_TEXT + 1);
        let body = serde_json::json!({"code": "X", "msg": long, "data": null});
        let err = decode_answer::<serde_json::Value>(
            Operation::GetCa,
            &shape(400),
            None,
            body.to_string().as_bytes(),
        )
        .unwrap_err();
        assert!(err.service_msg().unwrap().chars().count() <= MAX_ANSWER_TEXT + 1);
    }

    #[test]
    fn a_decode_error_names_what_was_wrong_but_not_the_answer_s_values() {
        let err = decode_answer::<CaDetail>(
            Operation::GetCa,
            &shape(200),
            None,
            br#"{"code":"SUCCESS","msg":"Success","data":{"caInfo":"SECRET-VALUE"}}"#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("invalid type: string"), "{text}");
        let err = decode_answer::<serde_json::Value>(
            Operation::GetCa,
            &shape(200),
            None,
            br#"{"nope":"SECRET-VALUE"}"#,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        let first = p.backoff(1, None);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let capped = p.backoff(10, None);
        assert!(capped >= Duration::from_millis(150) && capped <= Duration::from_millis(300));
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(60))),
            Duration::from_millis(300)
        );
        assert_eq!(
            p.backoff(1, Some(Duration::from_millis(10))),
            Duration::from_millis(10)
        );
    }
}
