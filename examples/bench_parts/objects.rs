//! Object helpers shared by the benchmark and the soak (examples): dynamic APIs, server-side apply,
//! conditions.

use anyhow::{Context as _, anyhow};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};

/// A dynamic API for one resource in namespace `ns`.
pub fn dynamic(
    client: &kube::Client,
    ns: &str,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Server-side-applies a JSON object as field manager `manager` (forcing conflicts).
pub async fn apply(
    api: &Api<DynamicObject>,
    object: serde_json::Value,
    manager: &str,
) -> anyhow::Result<()> {
    let name = object["metadata"]["name"]
        .as_str()
        .ok_or_else(|| anyhow!("object without a name"))?
        .to_string();
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&object),
    )
    .await
    .with_context(|| format!("apply {name}"))?;
    Ok(())
}

/// A condition of an object's `status.conditions`, by type.
pub fn condition<'a>(obj: &'a DynamicObject, type_: &str) -> Option<&'a serde_json::Value> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}
