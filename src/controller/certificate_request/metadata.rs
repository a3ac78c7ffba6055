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
