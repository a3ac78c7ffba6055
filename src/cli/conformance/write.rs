//! `--write`: the checks that change something, all on a throwaway root CA this module creates (alias
//! [`ALIAS_PREFIX`]…, [`CA_DAYS`] days) and deletes at the end whatever happened before; when it
//! cannot, the report carries the steps to delete it by hand.
//!
//! No step stops the run: each records its answer, a step that needs what an earlier one did not
//! get is left out, and the cleanup always runs.

use super::certs::{self, MAX_PAGES};
use super::expect;
use super::probe::{Answer, Probe};
use super::read;
use super::report::{Cleanup, Row, Section};
use super::shape;
use crate::ncp::messages;
use crate::ncp::types::{CaDetail, CaList, CaStatus, Complete, CrlConfig, UpdatedCa};
use crate::ncp::{NcpError, Operation};
use serde_json::{Value, json};

/// Every throwaway CA's alias starts with this (then 6 hex digits: 13 characters, NCP allows 15).
pub const ALIAS_PREFIX: &str = "ncpconf";

/// Validity of the throwaway CA: the shortest that still lets Update CRL Config set its minimum of
/// 3 days (a CRL period must end before the CA does).
pub const CA_DAYS: u32 = 4;

/// CRL renewal period set by the check (NCP's minimum).
const CRL_EXPIRY: &str = "3";

/// The OCSP responder URL set and removed again (never contacted: `.invalid` does not resolve).
const OCSP_URL: &str = "http://ocsp.conformance.invalid/ocsp";

fn new_alias() -> String {
    format!("{ALIAS_PREFIX}{:06x}", rand::random::<u32>() & 0x00ff_ffff)
}

/// Runs the write checks; the throwaway CA is deleted before this returns (or the cleanup says why
/// not). `None` when no CA was created (then nothing is left behind).
pub async fn run(probe: &Probe) -> (Vec<Section>, Option<Cleanup>) {
    let mut sections = Vec::new();
    let alias = new_alias();
    let mut s = Section::new(
        "write.create_ca",
        format!("Create CA (POST /ca?caType=PRIVATE_ROOT), alias {alias}, {CA_DAYS} days"),
    );
    let body = json!({
        "alias": alias,
        "memo": "throwaway CA of `ncp-pca-issuer pca conformance --write`; safe to delete",
        "keyType": "EC256",
        "period": CA_DAYS.to_string(),
        "x509Parameters": {"commonName": format!("{alias} conformance root")},
    });
    let result = probe
        .call(
            Operation::CreateCa,
            &["ca"],
            &[("caType", "PRIVATE_ROOT")],
            Some(&body),
        )
        .await;
    let created = expect::success::<CaDetail>(&mut s, &result, shape::CA_DETAIL, CaDetail::missing);
    let tag = match &created {
        Some(d) => {
            s.push(status_row(&d.ca_info.status, &CaStatus::Active));
            Some(d.ca_info.ca_tag.clone())
        }
        // The answer may be lost while the CA exists: look for it by its alias.
        None => find_by_alias(probe, &alias).await.map(|c| c.ca_info.ca_tag),
    };
    sections.push(s);
    let Some(tag) = tag else {
        // Nothing was created: nothing to clean up.
        return (sections, None);
    };
    if let Some(created) = &created {
        exercise(
            probe,
            &tag,
            created.ca_cert_info.not_after_date,
            &mut sections,
        )
        .await;
    }
    let cleanup = cleanup(probe, &tag, &alias, &mut sections).await;
    (sections, Some(cleanup))
}

/// The CA with `alias` in Get CA List, walking its pages.
async fn find_by_alias(probe: &Probe, alias: &str) -> Option<CaDetail> {
    for page in 1..=MAX_PAGES {
        let page_no = page.to_string();
        let answer = probe
            .call(Operation::GetCaList, &["ca"], &[("pageNo", &page_no)], None)
            .await
            .ok()?;
        let list: CaList =
            crate::ncp::client::decode_raw_answer(answer.op, answer.http_status, None, &answer.bytes)
                .ok()
                .flatten()?;
        let empty = list.ca_info_list.is_empty();
        let last = i64::from(page) >= list.total_page_no;
        if let Some(ca) = list
            .ca_info_list
            .into_iter()
            .find(|c| c.ca_info.alias == alias)
        {
            return Some(ca);
        }
        if empty || last {
            return None;
        }
    }
    None
}

fn status_row(got: &CaStatus, want: &CaStatus) -> Row {
    Row::judged(
        "status",
        format!("status {want}"),
        got.to_string(),
        got == want,
    )
}

/// A call whose answer must be `data: null`.
async fn unit_call(
    probe: &Probe,
    id: &str,
    title: String,
    op: Operation,
    path: &[&str],
) -> Section {
    let mut s = Section::new(id, title);
    let result = probe.call(op, path, &[], None).await;
    expect::success::<Value>(&mut s, &result, shape::NONE, |_| None);
    s
}

async fn get_ca(probe: &Probe, tag: &str, s: &mut Section) -> Option<CaDetail> {
    let result = probe.call(Operation::GetCa, &["ca", tag], &[], None).await;
    expect::success::<CaDetail>(s, &result, shape::CA_DETAIL, CaDetail::missing)
}

async fn update_ca(probe: &Probe, tag: &str, id: &str, status: CaStatus) -> Section {
    let mut s = Section::new(id, format!("Update CA to {status} (PUT /ca/{tag})"));
    let body = json!({"status": status.as_str()});
    let result = probe
        .call(Operation::UpdateCa, &["ca", tag], &[], Some(&body))
        .await;
    if let Some(updated) =
        expect::success::<UpdatedCa>(&mut s, &result, shape::UPDATED_CA, UpdatedCa::missing)
    {
        s.push(status_row(&updated.ca_info.status, &status));
    }
    s
}

/// Everything between creating the throwaway CA and deleting it.
async fn exercise(probe: &Probe, tag: &str, ca_end_ms: Option<i64>, sections: &mut Vec<Section>) {
    let (Some(leaf_req), Some(sub_req)) = (
        certs::request("leaf.conformance.invalid", false),
        certs::request("conformance intermediate", true),
    ) else {
        let mut s = Section::new("write.keys", "Keys and CSRs");
        s.push(Row::judged(
            "generate",
            "EC P-256 keys and CSRs",
            "could not generate them",
            false,
        ));
        sections.push(s);
        return;
    };
    let (s, leaf) = certs::sign(probe, tag, &leaf_req, false).await;
    sections.push(s);
    let (s, sub) = certs::sign(probe, tag, &sub_req, true).await;
    sections.push(s);
    sections.push(certs::sign_without_period(probe, tag, &leaf_req, ca_end_ms).await);
    sections.push(certs::issue_with_defaults(probe, tag, ca_end_ms).await);

    // The fresh CA: its CRL was never configured, its first certificate is the leaf.
    sections.extend(read::per_ca(probe, tag, "write.").await);

    revocations(probe, tag, leaf.as_deref(), sub.as_deref(), sections).await;
    sections.push(crl_config(probe, tag).await);
    sections.push(ocsp(probe, tag).await);
    sections.push(super::errors::documented(probe, tag, &leaf_req.csr_pem, &sub_req.csr_pem).await);

    sections.push(
        update_ca(
            probe,
            tag,
            "write.update_ca_deactivated",
            CaStatus::Deactivated,
        )
        .await,
    );
    sections.push(super::errors::while_deactivated(probe, tag, &leaf_req.csr_pem).await);
    sections.push(update_ca(probe, tag, "write.update_ca_active", CaStatus::Active).await);
    // Scheduling the deletion and cancelling it (the cleanup schedules it again).
    sections.push(update_ca(probe, tag, "write.schedule_deletion", CaStatus::Destroying).await);
    sections.push(update_ca(probe, tag, "write.cancel_deletion", CaStatus::Active).await);
}

/// Revoke End Cert on the leaf and on the intermediate, the CRL before and after Rotate CRL, and
/// Get End Cert List after the revocations.
async fn revocations(
    probe: &Probe,
    tag: &str,
    leaf: Option<&str>,
    sub: Option<&str>,
    sections: &mut Vec<Section>,
) {
    if let Some(leaf) = leaf {
        let path = ["ca", tag, "cert", leaf, "revoke"];
        let title = format!("Revoke End Cert of the leaf (POST /{})", path.join("/"));
        sections.push(
            unit_call(
                probe,
                "write.revoke_leaf",
                title,
                Operation::RevokeEndCert,
                &path,
            )
            .await,
        );
        let mut s = Section::new(
            "write.crl_before_rotation",
            format!("Get CA CRL right after the revocation (GET /ca/{tag}/crl)"),
        );
        certs::crl_lists(
            probe,
            tag,
            &mut s,
            &[("leaf_revoked", "the revoked leaf", leaf, true)],
        )
        .await;
        sections.push(s);
    }
    if let Some(sub) = sub {
        let path = ["ca", tag, "cert", sub, "revoke"];
        let mut s = Section::new(
            "write.revoke_intermediate",
            format!(
                "Revoke End Cert of the intermediate (POST /{})",
                path.join("/")
            ),
        );
        let result = probe.call(Operation::RevokeEndCert, &path, &[], None).await;
        expect::error(&mut s, "refused", &result, messages::CA_CERT_NOT_REVOCABLE);
        sections.push(s);
    }

    let mut s = Section::new(
        "write.listing",
        format!("Get End Cert List of every page, after the revocations (GET /ca/{tag}/cert)"),
    );
    if let Some(serials) = certs::all_serials(probe, tag, &mut s).await {
        if let Some(leaf) = leaf {
            s.push(certs::membership_row(
                "lists_revoked_leaf",
                "the revoked leaf",
                &serials,
                leaf,
                true,
            ));
        }
        if let Some(sub) = sub {
            s.push(certs::membership_row(
                "lists_intermediate",
                "Sign Sub Csr's certificate",
                &serials,
                sub,
                true,
            ));
        }
    }
    sections.push(s);

    let title = format!("Rotate CRL (POST /ca/{tag}/crl/rotate)");
    sections.push(
        unit_call(
            probe,
            "write.rotate_crl",
            title,
            Operation::RotateCrl,
            &["ca", tag, "crl", "rotate"],
        )
        .await,
    );
    let mut s = Section::new(
        "write.crl_after_rotation",
        format!("Get CA CRL after Rotate CRL (GET /ca/{tag}/crl)"),
    );
    let mut expected = Vec::new();
    if let Some(leaf) = leaf {
        expected.push(("leaf_revoked", "the revoked leaf", leaf, true));
    }
    if let Some(sub) = sub {
        expected.push((
            "intermediate_not_revoked",
            "the intermediate (its revocation refused)",
            sub,
            false,
        ));
    }
    certs::crl_lists(probe, tag, &mut s, &expected).await;
    sections.push(s);
}

/// Update CRL Config, then Get CRL Config.
async fn crl_config(probe: &Probe, tag: &str) -> Section {
    let mut s = Section::new(
        "write.update_crl_config",
        format!(
            "Update CRL Config to {CRL_EXPIRY} days, then Get CRL Config (PUT, GET /ca/{tag}/crl/config)"
        ),
    );
    let path = ["ca", tag, "crl", "config"];
    let body = json!({"expiry": CRL_EXPIRY});
    let result = probe
        .call(Operation::UpdateCrlConfig, &path, &[], Some(&body))
        .await;
    if let Some(config) =
        expect::success::<CrlConfig>(&mut s, &result, shape::CRL_CONFIG, CrlConfig::missing)
    {
        s.push(expiry_row("expiry", &config));
    }
    let result = probe.call(Operation::GetCrlConfig, &path, &[], None).await;
    if let Some(config) =
        expect::success::<CrlConfig>(&mut s, &result, shape::CRL_CONFIG, CrlConfig::missing)
    {
        s.push(expiry_row("get_after_update", &config));
    }
    s
}

fn expiry_row(check: &str, config: &CrlConfig) -> Row {
    let got = config.expiry.clone().unwrap_or_default();
    Row::judged(
        check,
        format!("expiry {CRL_EXPIRY:?}"),
        format!("{got:?}"),
        got == CRL_EXPIRY,
    )
}

/// Create OCSP, the URL in Get CA; Delete OCSP, the URL gone.
async fn ocsp(probe: &Probe, tag: &str) -> Section {
    let mut s = Section::new(
        "write.ocsp",
        format!("Create OCSP, then Delete OCSP (PUT, DELETE /ca/{tag}/urls)"),
    );
    let path = ["ca", tag, "urls"];
    let body = json!({"ocsp_servers": OCSP_URL});
    let result = probe
        .call(Operation::CreateOcsp, &path, &[], Some(&body))
        .await;
    expect::success::<Value>(&mut s, &result, shape::NONE, |_| None);
    if let Some(d) = get_ca(probe, tag, &mut s).await {
        let ocsp = &d.ca_info.url_info.ocsp;
        let has = ocsp.iter().any(|u| u == OCSP_URL);
        s.push(Row::judged(
            "ocsp_url_listed",
            format!("urlInfo.ocsp holds {OCSP_URL}"),
            format!("{ocsp:?}"),
            has,
        ));
    }
    let result = probe.call(Operation::DeleteOcsp, &path, &[], None).await;
    expect::success::<Value>(&mut s, &result, shape::NONE, |_| None);
    if let Some(d) = get_ca(probe, tag, &mut s).await {
        let ocsp = &d.ca_info.url_info.ocsp;
        s.push(Row::judged(
            "ocsp_url_removed",
            "urlInfo.ocsp empty",
            format!("{ocsp:?}"),
            ocsp.is_empty(),
        ));
    }
    s
}

/// DESTROYING, the CA still listed, Delete CA, and Get CA to see it gone.
async fn cleanup(probe: &Probe, tag: &str, alias: &str, sections: &mut Vec<Section>) -> Cleanup {
    sections.push(
        update_ca(
            probe,
            tag,
            "write.update_ca_destroying",
            CaStatus::Destroying,
        )
        .await,
    );
    let mut s = Section::new("write.delete_ca", format!("Delete CA (DELETE /ca/{tag})"));
    let listed = find_by_alias(probe, alias).await;
    s.push(Row::judged(
        "lists_destroying",
        "Get CA List lists the DESTROYING CA",
        listed.as_ref().map_or_else(
            || "not listed".to_string(),
            |c| format!("listed, {}", c.ca_info.status),
        ),
        listed.is_some(),
    ));
    let result = probe
        .call(Operation::DeleteCa, &["ca", tag], &[], None)
        .await;
    let deleted_ok = is_success(&result);
    expect::success::<Value>(&mut s, &result, shape::NONE, |_| None);
    let result = probe.call(Operation::GetCa, &["ca", tag], &[], None).await;
    let gone = expect::error(&mut s, "gone", &result, messages::CA_NOT_FOUND);
    sections.push(s);
    let deleted = deleted_ok && gone;
    Cleanup {
        ca_tag: tag.to_string(),
        alias: alias.to_string(),
        deleted,
        manual_steps: if deleted {
            Vec::new()
        } else {
            Cleanup::manual_steps_for(tag, alias)
        },
    }
}

fn is_success(result: &Result<Answer, NcpError>) -> bool {
    result.as_ref().is_ok_and(|a| {
        a.http_status == 200
            && a.json
                .as_ref()
                .and_then(|j| j.get("code"))
                .and_then(Value::as_str)
                == Some(crate::ncp::types::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alias_fits_ncp_s_limit_and_carries_the_prefix() {
        let a = new_alias();
        assert!(a.starts_with(ALIAS_PREFIX));
        assert!((3..=15).contains(&a.chars().count()), "{a}");
    }
}
