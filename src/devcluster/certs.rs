//! Certificates of a local control plane: its CA, the apiserver's serving certificate, an admin client
//! certificate (`system:masters`) and the service-account signing key.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::Path;

/// PEM material written to the cluster directory.
#[derive(Debug)]
pub struct ClusterCerts {
    /// The cluster CA certificate.
    pub ca_pem: String,
    /// The admin client certificate.
    pub admin_cert_pem: String,
    /// The admin client key.
    pub admin_key_pem: String,
}

/// Generates everything and writes `ca.{crt,key}`, `apiserver.{crt,key}`, `admin.{crt,key}`, `sa.key` and `sa.pub`
/// into `dir`.
///
/// # Errors
/// When generation or writing fails.
pub fn generate(dir: &Path) -> Result<ClusterCerts, String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: rcgen::Error| format!("{what}: {err}")
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e("ca params"))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ncp-pca-issuer dev cluster CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(e("ca key"))?)
        .map_err(e("ca cert"))?;

    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes.default.svc".to_string(),
    ])
    .map_err(e("serving params"))?;
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_key = KeyPair::generate().map_err(e("serving key"))?;
    let serving_cert = serving
        .signed_by(&serving_key, &ca)
        .map_err(e("serving cert"))?;

    let mut admin = CertificateParams::new(Vec::<String>::new()).map_err(e("admin params"))?;
    admin.distinguished_name.push(DnType::CommonName, "admin");
    admin
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_key = KeyPair::generate().map_err(e("admin key"))?;
    let admin_cert = admin.signed_by(&admin_key, &ca).map_err(e("admin cert"))?;

    let sa_key = KeyPair::generate().map_err(e("service-account key"))?;

    let write = |name: &str, content: &str| {
        std::fs::write(dir.join(name), content).map_err(|err| format!("write {name}: {err}"))
    };
    write("ca.crt", &ca.pem())?;
    // For tests that act as a node (a client certificate for `system:node:<name>`).
    write("ca.key", &ca.key().serialize_pem())?;
    write("apiserver.crt", &serving_cert.pem())?;
    write("apiserver.key", &serving_key.serialize_pem())?;
    write("admin.crt", &admin_cert.pem())?;
    write("admin.key", &admin_key.serialize_pem())?;
    write("sa.key", &sa_key.serialize_pem())?;
    write("sa.pub", &sa_key.public_key_pem())?;
    Ok(ClusterCerts {
        ca_pem: ca.pem(),
        admin_cert_pem: admin_cert.pem(),
        admin_key_pem: admin_key.serialize_pem(),
    })
}
