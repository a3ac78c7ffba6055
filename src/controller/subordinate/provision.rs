//! Making an intermediate: a key generated here, recorded in the Secret before Sign Sub Csr, recovered
//! by key when the answer was lost, checked, and stored in place of the previous one in one write.
//! Failed attempts are spaced out (`retry-after` on the Secret, waited out by the plan), so that no
//! watch event or requeue can turn into a burst of Sign Sub Csr calls.

use super::decide::{
    Intermediate, KEY_CA_CRT, KEY_PENDING_KEY, KEY_TLS_CRT, KEY_TLS_KEY, Wanted, attempt_key,
    retry_after_value,
};
use super::error::{AnswerError, SubordinateError, secret_err};
use super::secret::data;
use crate::api::annotations::{
    ANNOTATION_CA_TAG, ANNOTATION_OWNER, ANNOTATION_PENDING_SINCE, ANNOTATION_RENEW_HANDLED,
    ANNOTATION_RETRY_AFTER, ANNOTATION_SPEC_HASH,
};
use crate::controller::delays::{RECOVERY_CONTINUE, TRANSIENT_RETRY, UNUSABLE_ANSWER_RETRY};
use crate::controller::failure::{AfterFailure, after_failure};
use crate::controller::period::period_days;
use crate::controller::recovery::{Search, Sought, Window, extra_skew, find_issued, settle_window};
use crate::controller::{Context, FIELD_MANAGER, IssuerError};
use crate::ncp::{self, NcpError};
use crate::pki::{CertInfo, PrivateKey, create_csr, parse_certificates_pem};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// Writes the issuer's Secret.
pub(super) struct SecretWriter<'a> {
    pub ctx: &'a Context,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The owner annotation's value.
    pub owner: &'a str,
    /// The issuer as controller owner.
    pub owner_ref: Option<OwnerReference>,
}

/// Whether `secret`'s ownerReferences already name the issuer `owner_ref` (by UID).
pub(super) fn owner_ref_current(owner_ref: Option<&OwnerReference>, secret: &Secret) -> bool {
    owner_ref.is_none_or(|r| {
        secret
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|refs| refs.iter().any(|o| o.uid == r.uid))
    })
}

/// How long the next Sign Sub Csr waits after one failed with `e` (NCP errors of the recovery lookup
/// too): the shared classifier's verdict ([`after_failure`]), with no retry budget (an issuer keeps
/// trying), never sooner than [`TRANSIENT_RETRY`]; `recheck` when a retry soon will not help (NCP
/// refused, or the issuer itself is at fault: credentials, CA not ACTIVE, signing limit).
pub(super) fn sign_backoff(e: &NcpError, recheck: Duration) -> Duration {
    match after_failure(e, Duration::ZERO, Duration::MAX) {
        AfterFailure::Retry { after } => after.max(TRANSIENT_RETRY),
        AfterFailure::WaitForIssuer | AfterFailure::Fail { .. } => recheck,
    }
}

impl SecretWriter<'_> {
    /// Writes the Secret: `data` entries replace ours (`None` removes), annotations likewise,
    /// conditional on the resourceVersion of `base` (a create when there is none).
    pub async fn write(
        &self,
        base: Option<Secret>,
        data: BTreeMap<String, Option<Vec<u8>>>,
        annotations: &[(&str, Option<String>)],
    ) -> Result<Secret, SubordinateError> {
        let api = Api::<Secret>::namespaced(self.ctx.client.clone(), self.namespace);
        let exists = base.is_some();
        let mut secret = base.unwrap_or_else(|| Secret {
            type_: Some("kubernetes.io/tls".into()),
            ..Secret::default()
        });
        secret.metadata.name = Some(self.name.to_string());
        secret.metadata.namespace = Some(self.namespace.to_string());
        secret.metadata.managed_fields = None;
        secret
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(
                "app.kubernetes.io/managed-by".into(),
                "ncp-pca-issuer".into(),
            );
        let notes = secret
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        notes.insert(ANNOTATION_OWNER.into(), self.owner.to_string());
        for (k, v) in annotations {
            match v {
                Some(v) => notes.insert((*k).to_string(), v.clone()),
                None => notes.remove(*k),
            };
        }
        if let Some(r) = &self.owner_ref {
            let refs = secret
                .metadata
                .owner_references
                .get_or_insert_with(Vec::new);
            // A reference to an earlier issuer of the same name (deleted and created again) goes: two
            // controller references are refused, and the old one would have the Secret collected.
            refs.retain(|o| !(o.kind == r.kind && o.name == r.name && o.uid != r.uid));
            if !refs.iter().any(|o| o.uid == r.uid) {
                refs.push(r.clone());
            }
        }
        let map = secret.data.get_or_insert_with(BTreeMap::new);
        // A kubernetes.io/tls Secret must have both keys, if empty.
        for key in [KEY_TLS_KEY, KEY_TLS_CRT] {
            map.entry(key.into())
                .or_insert_with(|| ByteString(Vec::new()));
        }
        for (k, v) in data {
            match v {
                Some(v) => map.insert(k, ByteString(v)),
                None => map.remove(&k),
            };
        }
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let result = if exists {
            api.replace(self.name, &pp, &secret).await
        } else {
            api.create(&pp, &secret).await
        };
        result.map_err(secret_err("write", self.namespace, self.name))
    }
}

/// What a provisioning attempt came to.
pub enum Provisioned {
    /// A new intermediate, stored.
    Done(Box<Intermediate>),
    /// Nothing to do before this long: an earlier Sign Sub Csr may still land, or an earlier failure
    /// is being waited out.
    Wait(Duration),
}

/// One provisioning of an intermediate.
pub(super) struct Provision<'a> {
    pub issuer_kind: &'static str,
    pub writer: SecretWriter<'a>,
    pub ncp: &'a ncp::Client,
    pub ca_tag: &'a str,
    /// The NCP CA's end (Unix seconds), to clamp the intermediate's life.
    pub ca_not_after: Option<i64>,
    /// Get CA Chain's answer, to complete a chain Sign Sub Csr returns without its root.
    pub ca_chain: &'a str,
    pub wanted: &'a Wanted,
    /// The NCP CA's own certificate (Get CA), to check the new intermediate against.
    pub ncp_ca: Option<&'a CertInfo>,
    /// The issuer's renew annotation: a new intermediate satisfies it.
    pub renew_request: Option<String>,
    /// Wait after a failure that a retry soon will not fix.
    pub recheck: Duration,
}

impl Provision<'_> {
    /// The `retry-after` annotation's value, `after` from now.
    fn retry_after(&self, after: Duration) -> String {
        let key = attempt_key(self.wanted, self.ca_tag, self.renew_request.as_deref());
        retry_after_value(Timestamp::now(), after, &key)
    }

    /// Provisions: recovers the pending key's certificate, or signs a new key (the plan has waited out
    /// any `retry-after` already).
    pub async fn run(&self, secret: Option<Secret>) -> Result<Provisioned, SubordinateError> {
        let annotation = |key: &str| {
            secret
                .as_ref()
                .and_then(|s| s.annotations().get(key))
                .and_then(|t| t.parse::<Timestamp>().ok())
        };
        let mut pending_key = secret
            .as_ref()
            .and_then(|s| data(s, KEY_PENDING_KEY))
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|pem| PrivateKey::from_pem(pem).ok())
            .filter(|k| k.key_type() == self.wanted.key_type);
        // A Sign Sub Csr for the pending key may have taken effect without its answer reaching us: look
        // for it before signing again.
        if let Some(since) = annotation(ANNOTATION_PENDING_SINCE)
            && let Some(key) = pending_key.take()
        {
            let spki = key.spki_der();
            let settle = settle_window(self.writer.ctx);
            let search_id = format!("{}/{}", self.issuer_kind, self.writer.owner);
            let found = find_issued(
                self.ncp,
                &self.writer.ctx.recovery,
                self.ca_tag,
                &search_id,
                Window::around(since.as_millisecond(), settle).widened(extra_skew(self.writer.ctx)),
                &Sought::ca_key(&spki),
            )
            .await
            .map_err(IssuerError::from)?;
            let searched_from = match found {
                Search::Found(found) => {
                    tracing::info!(
                        kind = self.issuer_kind,
                        owner = self.writer.owner,
                        serial = found.serial,
                        "recovered an intermediate whose signing answer was lost"
                    );
                    return self
                        .finish(secret, key, &found.cert_pem, &found.chain)
                        .await;
                }
                // The search goes on where it stopped.
                Search::Unfinished => return Ok(Provisioned::Wait(RECOVERY_CONTINUE)),
                Search::NotFound { started_ms } => started_ms,
            };
            // "Not found" proves that the signing never took effect only if the search started once
            // it had settled.
            let settled = since
                .as_millisecond()
                .saturating_add(i64::try_from(settle.as_millis()).unwrap_or(i64::MAX));
            if searched_from < settled {
                let left = settled.saturating_sub(Timestamp::now().as_millisecond());
                let left = Duration::from_millis(u64::try_from(left).unwrap_or(0));
                return Ok(Provisioned::Wait(left.max(RECOVERY_CONTINUE)));
            }
            pending_key = Some(key);
        }
        let key = match pending_key {
            Some(k) => k,
            None => crate::controller::signers::generate_key(self.wanted.key_type)
                .await
                .map_err(SubordinateError::Generate)?,
        };
        let csr = create_csr(&self.wanted.subject, &[], &key, true)
            .map_err(SubordinateError::Generate)?;
        let days = period_days(
            self.wanted.duration,
            Timestamp::now().as_second(),
            self.ca_not_after,
        )
        .map_err(SubordinateError::Period)?;
        // Record the key and that signing starts before calling NCP.
        let marked = self
            .writer
            .write(
                secret,
                BTreeMap::from([(
                    KEY_PENDING_KEY.to_string(),
                    Some(key.to_pkcs8_pem().into_bytes()),
                )]),
                &[
                    (ANNOTATION_PENDING_SINCE, Some(Timestamp::now().to_string())),
                    (ANNOTATION_RETRY_AFTER, None),
                ],
            )
            .await?;
        let answer = self
            .ncp
            .sign_sub_csr(self.ca_tag, &csr, u32::try_from(days).unwrap_or(u32::MAX))
            .await;
        match answer {
            Ok(issued) => {
                self.finish(Some(marked), key, &issued.certificate, &issued.ca_chain)
                    .await
            }
            Err(e) => {
                // Signed nothing for sure: no recovery is needed, but the next attempt waits out a
                // backoff (every write of ours is a watch event, and would otherwise sign again at
                // once). Otherwise the marker stays: the next attempt looks for the certificate first,
                // after the settle window.
                if !e.may_have_applied() {
                    let backoff = sign_backoff(&e, self.recheck);
                    if let Err(w) = self
                        .writer
                        .write(
                            Some(marked),
                            BTreeMap::new(),
                            &[
                                (ANNOTATION_PENDING_SINCE, None),
                                (ANNOTATION_RETRY_AFTER, Some(self.retry_after(backoff))),
                            ],
                        )
                        .await
                    {
                        tracing::warn!(error = %w, "cannot record the failed Sign Sub Csr");
                    }
                }
                Err(IssuerError::from(e).into())
            }
        }
    }

    /// Checks NCP's answer and stores the new intermediate in place of the old one. An unusable answer
    /// is not recovered again, and the next signing waits [`UNUSABLE_ANSWER_RETRY`].
    async fn finish(
        &self,
        secret: Option<Secret>,
        key: PrivateKey,
        cert_pem: &str,
        chain: &[String],
    ) -> Result<Provisioned, SubordinateError> {
        let now = OffsetDateTime::now_utc();
        let key_pem = key.to_pkcs8_pem();
        let checked = assemble(&key, cert_pem, chain, self.ca_chain, now)
            .and_then(|(crt, ca)| {
                super::decide::read_intermediate(
                    Some(key_pem.as_bytes()),
                    Some(crt.as_bytes()),
                    Some(ca.as_bytes()),
                    now,
                )
                .map(|i| (i, crt, ca))
                .map_err(AnswerError::Unusable)
            })
            .and_then(|(i, crt, ca)| {
                // What is stored must satisfy the very check that asked for it, or every write of the
                // Secret would ask again.
                let current = Ok(i);
                let digest = self.wanted.digest();
                let again = super::decide::needs_new(
                    &super::decide::Observed {
                        current: &current,
                        spec_digest: Some(&digest),
                        signed_by_tag: Some(self.ca_tag),
                        ca_tag: self.ca_tag,
                        ncp_ca: self.ncp_ca,
                        renew_request: self.renew_request.as_deref(),
                        renew_handled: self.renew_request.as_deref(),
                    },
                    self.wanted,
                    now,
                );
                match (again, current) {
                    (None, Ok(i)) => Ok((i, crt, ca)),
                    (Some(why), _) => Err(AnswerError::WouldBeReplaced(why)),
                    (None, Err(p)) => Err(AnswerError::Unusable(p)),
                }
            });
        let (intermediate, tls_crt, ca_crt) = match checked {
            Ok(c) => c,
            Err(why) => {
                if let Err(w) = self
                    .writer
                    .write(
                        secret,
                        BTreeMap::new(),
                        &[
                            (ANNOTATION_PENDING_SINCE, None),
                            (
                                ANNOTATION_RETRY_AFTER,
                                Some(self.retry_after(UNUSABLE_ANSWER_RETRY)),
                            ),
                        ],
                    )
                    .await
                {
                    tracing::warn!(error = %w, "cannot record the unusable Sign Sub Csr answer");
                }
                return Err(why.into());
            }
        };
        self.writer
            .write(
                secret,
                BTreeMap::from([
                    (KEY_TLS_KEY.to_string(), Some(key_pem.into_bytes())),
                    (KEY_TLS_CRT.to_string(), Some(tls_crt.into_bytes())),
                    (KEY_CA_CRT.to_string(), Some(ca_crt.into_bytes())),
                    (KEY_PENDING_KEY.to_string(), None),
                ]),
                &[
                    (ANNOTATION_PENDING_SINCE, None),
                    (ANNOTATION_RETRY_AFTER, None),
                    (ANNOTATION_SPEC_HASH, Some(self.wanted.digest())),
                    (ANNOTATION_CA_TAG, Some(self.ca_tag.to_string())),
                    (ANNOTATION_RENEW_HANDLED, self.renew_request.clone()),
                ],
            )
            .await?;
        Ok(Provisioned::Done(Box::new(intermediate)))
    }
}

/// `tls.crt` (the intermediate, then the CAs above it without the root) and `ca.crt` (the root) from
/// NCP's answer, after checking that the certificate is a CA for `key` and chains up; the chain is
/// completed from Get CA Chain (`ca_chain`).
fn assemble(
    key: &PrivateKey,
    cert_pem: &str,
    chain: &[String],
    ca_chain: &str,
    now: OffsetDateTime,
) -> Result<(String, String), AnswerError> {
    let is_ca = parse_certificates_pem(cert_pem)
        .ok()
        .and_then(|c| c.into_iter().next())
        .is_some_and(|c| c.is_ca);
    if !is_ca {
        return Err(AnswerError::NotCa);
    }
    let mut pems = chain.to_vec();
    pems.push(ca_chain.to_string());
    let issued = crate::pki::assemble(&key.spki_der(), cert_pem, &pems, now)
        .map_err(AnswerError::Assemble)?;
    Ok((issued.certificate_pem, issued.ca_pem))
}
