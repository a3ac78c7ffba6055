//! The request's own metadata writes (annotations and finalizers of the at-most-once rule), and how a
//! request is named in errors and logs.

use crate::api::certmanager::CertificateRequest;
use kube::ResourceExt as _;
use kube::api::Api;

/// `namespace/name` of a request, for errors and logs.
pub(super) fn request_name(cr: &CertificateRequest) -> String {
    format!("{}/{}", cr.namespace().unwrap_or_default(), cr.name_any())
}

/// Merge-patches a request's metadata (annotations, finalizers; a `resourceVersion` in the patch makes
/// it conditional).
pub(super) async fn merge_metadata(
    client: &kube::Client,
    cr: &CertificateRequest,
    patch: &serde_json::Value,
) -> Result<(), kube::Error> {
    let api: Api<CertificateRequest> =
        Api::namespaced(client.clone(), &cr.namespace().unwrap_or_default());
    api.patch(
        &cr.name_any(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(patch),
    )
    .await
    .map(|_| ())
}

/// Records the serial NCP gave (with the CA tag) on the request: how a certificate whose Issued write
/// failed is found again without searching NCP.
pub(super) async fn record_serial(
    client: &kube::Client,
    cr: &CertificateRequest,
    ca_tag: &str,
    serial: &str,
) -> Result<(), super::RequestError> {
    use crate::api::annotations::{ANNOTATION_CA_TAG, ANNOTATION_SERIAL};
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_SERIAL: serial, ANNOTATION_CA_TAG: ca_tag}}});
    merge_metadata(client, cr, &patch)
        .await
        .map_err(|source| super::RequestError::RecordSerial {
            request: request_name(cr),
            source,
        })
}
