//! Our CRDs and the CRD YAML generated from them.

pub mod annotations;
pub mod certmanager;
pub mod issuer;

pub use issuer::{
    ClusterPrivateCA, IssuerResource, IssuerSpec, IssuerStatus, PrivateCA, RevocationPolicy,
    SubordinateKeyAlgorithm, SubordinateSpec, SubordinateStatus, SubordinateSubject,
};

use kube::CustomResourceExt as _;

/// Every CRD we own, as one multi-document YAML (what `crdgen` prints and `crds/` holds).
///
/// # Errors
/// When YAML serialisation fails (it does not for these types).
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in [PrivateCA::crd(), ClusterPrivateCA::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn checked_in_crds_match_the_rust_types() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/pca.ncp-issuer.dev.yaml");
        let on_disk = std::fs::read_to_string(path).expect("crds/pca.ncp-issuer.dev.yaml exists");
        assert!(
            on_disk == super::crd_yaml().expect("renders"),
            "crds/ is stale: run `cargo run -- crdgen > crds/pca.ncp-issuer.dev.yaml`"
        );
    }

    #[test]
    fn both_kinds_share_the_spec_schema() {
        use kube::CustomResourceExt as _;
        let spec = |crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
            let schema = crd.spec.versions[0].schema.clone().unwrap().open_api_v3_schema.unwrap();
            let mut spec = schema.properties.unwrap().remove("spec").unwrap();
            spec.description = None;
            spec
        };
        assert_eq!(
            spec(super::PrivateCA::crd()),
            spec(super::ClusterPrivateCA::crd())
        );
        assert_eq!(super::ClusterPrivateCA::crd().spec.scope, "Cluster");
    }
}
