//! The decision of a subordinate reconcile (pure: every input is in [`Observed`]): from what the fetch
//! found, what signs and what is done ([`plan`]): report, adopt the Secret, or provision (a
//! provisioning attempt is then concluded by `outcome::conclude`).

use super::decide::{self, Intermediate, SecretProblem, Wanted, Why, attempt_key, still_waiting};
use super::error::SubordinateError;
use super::outcome::{conclude, failed, jiff, not_ready, note, signing};
use super::provision::{Provisioned, owner_ref_current};
use super::report::{Job, Outcome};
use super::secret::{intermediate_in, is_owned_by};
use crate::api::annotations::{
    ANNOTATION_CA_TAG, ANNOTATION_RENEW_HANDLED, ANNOTATION_RETRY_AFTER, ANNOTATION_SPEC_HASH,
};
use crate::api::{SubordinateSpec, SubordinateStatus};
use crate::controller::conditions::{Desired, UPSTREAM_READY};
use crate::controller::delays::TRANSIENT_RETRY;
use crate::controller::events::{EventType, Note};
use crate::controller::signers::LocalSigner;
use crate::pki::CertInfo;
use crate::reason::Reason;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt as _;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// What NCP said in this reconcile, as far as the plan needs it.
#[derive(Debug, Clone)]
pub struct NcpView {
    /// Whether NCP says the CA is out of service (not ACTIVE, or expired): local signing stops too.
    pub out_of_service: bool,
    /// NCP's verdict on the CA.
    pub verdict: Desired,
    /// The CA's own certificate (Get CA), when it parses.
    pub ca: Option<CertInfo>,
}

/// What the fetch found.
#[derive(Debug)]
pub struct Observed<'a> {
    /// The owner annotation's value (`IssuerResource::owner_id`).
    pub owner: &'a str,
    /// The issuer as the Secret's controller owner.
    pub owner_ref: Option<&'a OwnerReference>,
    /// The issuer's name (the intermediate's default common name).
    pub issuer_name: &'a str,
    /// `spec.caTag`.
    pub ca_tag: &'a str,
    /// `spec.subordinate`.
    pub spec: &'a SubordinateSpec,
    /// Namespace of the Secret.
    pub namespace: &'a str,
    /// The issuer's renew annotation.
    pub renew_request: Option<&'a str>,
    /// `status.subordinate` as last written.
    pub previous: Option<&'a SubordinateStatus>,
    /// The Secret, read now, or why it could not be read.
    pub secret: Result<Option<Secret>, SubordinateError>,
    /// The signer in memory.
    pub cached: Option<Arc<LocalSigner>>,
    /// What NCP said, when it answered.
    pub ncp: Option<NcpView>,
    /// Now.
    pub now: OffsetDateTime,
    /// The periodic re-check.
    pub recheck: Duration,
}

/// What a reconcile does.
#[derive(Debug)]
pub struct Plan {
    /// Events about what was found in the Secret, published whatever follows.
    pub found: Vec<Note>,
    /// The step.
    pub step: Step,
}

/// The step of a reconcile.
#[derive(Debug)]
pub enum Step {
    /// Nothing to do but report.
    Report(Outcome),
    /// Report, after pointing the Secret's owner reference at this issuer (a failure is only logged).
    Adopt(Box<Secret>, Outcome),
    /// Ask NCP for a new intermediate.
    Provision(Box<Job>),
}

impl Plan {
    /// What signs while the step runs (what the cache holds): nothing once the plan found no usable
    /// intermediate, even while NCP is asked for the next one.
    #[must_use]
    pub fn signer(&self) -> Option<Arc<LocalSigner>> {
        match &self.step {
            Step::Report(o) | Step::Adopt(_, o) => o.signer.clone(),
            Step::Provision(job) => job.current.clone(),
        }
    }

    fn report(found: Vec<Note>, outcome: Outcome) -> Self {
        Self {
            found,
            step: Step::Report(outcome),
        }
    }
}

/// Decides what the reconcile does.
#[must_use]
pub fn plan(o: Observed<'_>) -> Plan {
    let (namespace, name) = (o.namespace, o.spec.secret_name.as_str());
    let previous = o.previous.cloned();
    let wanted = match Wanted::from_spec(o.spec, o.issuer_name) {
        Ok(w) => w,
        // Next: a spec change wakes the issuer.
        Err(e) => return Plan::report(vec![], failed(&e.into(), namespace, previous, o.recheck)),
    };
    let renamed = previous.as_ref().is_some_and(|p| p.secret_name != name);
    // What is in memory counts only for the Secret the spec names.
    let cached = o.cached.filter(|c| !renamed && c.secret_name == name);
    let secret = match o.secret {
        Ok(s) => s,
        Err(e) => {
            // A failed read says nothing about the intermediate already checked: it goes on signing.
            // Next: a retry soon.
            let outcome = match cached {
                Some(c) => signing(
                    c,
                    &wanted,
                    previous.and_then(|p| p.last_renew_request),
                    Some(e.to_string()),
                    Some(TRANSIENT_RETRY),
                    o.now,
                    o.recheck,
                ),
                None => failed(&e, namespace, previous, TRANSIENT_RETRY),
            };
            return Plan::report(vec![], outcome);
        }
    };
    if let Some(s) = &secret
        && !is_owned_by(s, o.owner)
    {
        let conflict = SubordinateError::Conflict {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        // Next: the Secret's deletion or a spec change wakes the issuer.
        return Plan::report(vec![], failed(&conflict, namespace, previous, o.recheck));
    }
    let current = intermediate_in(secret.as_ref(), o.now);
    let mut found = Vec::new();
    match &current {
        Err(SecretProblem::Empty) if previous.is_some() && !renamed && secret.is_none() => {
            found.push(note(EventType::Warning, Reason::IntermediateMissing, namespace, name, format!("secret {namespace}/{name} with the intermediate was deleted; provisioning a new intermediate")));
        }
        Err(SecretProblem::Empty) | Ok(_) => {}
        Err(p) => found.push(note(EventType::Warning, Reason::IntermediateInvalid, namespace, name, format!("secret {namespace}/{name}: {p}; nothing signs with it, provisioning a new intermediate"))),
    }
    // NCP stays the point of control: a CA it says is out of service stops local signing too. An NCP
    // that does not answer does not. Next: the periodic check.
    if let Some(u) = o.ncp.as_ref().filter(|u| u.out_of_service) {
        let ready = Desired::not_ready(u.verdict.reason, u.verdict.message.clone());
        return Plan::report(found, not_ready(ready, previous, o.recheck));
    }
    let annotation = |key: &str| {
        secret
            .as_ref()
            .and_then(|s| s.annotations().get(key))
            .cloned()
    };
    let renew_handled = annotation(ANNOTATION_RENEW_HANDLED);
    let retry_after = annotation(ANNOTATION_RETRY_AFTER);
    let (digest, signed_by_tag) = (
        annotation(ANNOTATION_SPEC_HASH),
        annotation(ANNOTATION_CA_TAG),
    );
    let ncp_up = o.ncp.is_some();
    let ncp_ca = o.ncp.and_then(|u| u.ca);
    let why = decide::needs_new(
        &decide::Observed {
            current: &current,
            spec_digest: digest.as_deref(),
            signed_by_tag: signed_by_tag.as_deref(),
            ca_tag: o.ca_tag,
            ncp_ca: ncp_ca.as_ref(),
            renew_request: o.renew_request,
            renew_handled: renew_handled.as_deref(),
        },
        &wanted,
        o.now,
    );
    let current = match current {
        // Without NCP to confirm it, only the intermediate this issuer already checked is trusted (not,
        // say, an older Secret restored from a backup). Next: a retry soon, and NCP's return.
        Ok(i) if !ncp_up && !already_checked(cached.as_deref(), previous.as_ref(), &i) => {
            let ready = Desired::not_ready(
                Reason::IntermediateUnverified,
                format!(
                    "secret {namespace}/{name} holds intermediate {}, which does not chain to the root this issuer last checked; it is used once NCP can confirm it (see the {UPSTREAM_READY} condition)",
                    i.certificate().serial.to_colon_hex()
                ),
            );
            return Plan::report(found, not_ready(ready, previous, TRANSIENT_RETRY));
        }
        other => other,
    };
    let signer = |intermediate| {
        Arc::new(LocalSigner {
            secret_name: name.to_string(),
            intermediate,
        })
    };
    let (why, current) = match (why, current) {
        (None, Ok(i)) => {
            let outcome = signing(
                signer(i),
                &wanted,
                renew_handled,
                None,
                None,
                o.now,
                o.recheck,
            );
            // Next: the renewal time, or the periodic check.
            return match secret.filter(|s| !owner_ref_current(o.owner_ref, s)) {
                Some(s) => Plan {
                    found,
                    step: Step::Adopt(Box::new(s), outcome),
                },
                None => Plan::report(found, outcome),
            };
        }
        // `needs_new` gives a reason whenever there is no usable intermediate.
        (why, current) => (why.unwrap_or(Why::Missing), current),
    };
    // An intermediate of another CA than the spec's signs nothing more.
    let current = current
        .ok()
        .filter(|_| why.current_still_signs())
        .map(signer);
    if !ncp_up {
        // NCP cannot be asked now: keep signing with what we have, if anything. Next: a retry soon.
        let outcome = match current {
            Some(c) => signing(
                c,
                &wanted,
                renew_handled,
                Some(format!("{why}, but NCP cannot be asked now")),
                Some(TRANSIENT_RETRY),
                o.now,
                o.recheck,
            ),
            None => not_ready(
                Desired::not_ready(
                    Reason::UpstreamUnavailable,
                    format!(
                        "{why}, and NCP cannot be asked now (see the {UPSTREAM_READY} condition)"
                    ),
                ),
                previous,
                TRANSIENT_RETRY,
            ),
        };
        return Plan::report(found, outcome);
    }
    let job = Job {
        why,
        wanted,
        secret,
        current,
        renew_handled,
        renew_request: o.renew_request.map(str::to_string),
        ncp_ca,
        renamed_from: previous
            .as_ref()
            .filter(|_| renamed)
            .map(|p| p.secret_name.clone()),
        previous,
        namespace: namespace.to_string(),
        name: name.to_string(),
        ca_tag: o.ca_tag.to_string(),
    };
    // A failed attempt is waited out (every write of ours wakes the issuer again, and must not turn
    // into another Sign Sub Csr). Next: the end of the wait.
    let key = attempt_key(&job.wanted, o.ca_tag, o.renew_request);
    if let Some(wait) = retry_after.and_then(|v| still_waiting(&v, &key, jiff(o.now))) {
        let (outcome, _) = conclude(&job, Ok(Provisioned::Wait(wait)), o.now, o.recheck);
        return Plan::report(found, outcome);
    }
    Plan {
        found,
        step: Step::Provision(Box::new(job)),
    }
}

/// Whether `i` chains to the root this issuer last checked against NCP (pinned in status), or is the
/// intermediate it holds in memory.
fn already_checked(
    cached: Option<&LocalSigner>,
    previous: Option<&SubordinateStatus>,
    i: &Intermediate,
) -> bool {
    previous.is_some_and(|p| !p.root_sha256.is_empty() && p.root_sha256 == i.root_sha256)
        || cached.is_some_and(|c| c.intermediate.certificate().der == i.certificate().der)
}

#[cfg(test)]
mod tests;
