//! Maps `METHOD /api/v1/…` to an operation and its path parameters.

use super::request::percent_decode;
use crate::ncp::operation::Operation;
use axum::http::Method;

/// A matched API route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub op: Operation,
    pub ca_tag: Option<String>,
    pub serial: Option<String>,
    pub id_no: Option<String>,
}

/// Finds the operation for a method and path (`None` → the gateway's 404). Empty path parameters
/// still route, so the operation can answer "caTag is missing." and the like.
pub(crate) fn match_route(method: &Method, path: &str) -> Option<Route> {
    use Operation as O;
    let rest = path.strip_prefix("/api/v1/")?;
    let segs: Vec<String> = rest.split('/').map(percent_decode).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    let route = |op, tag: Option<&str>| Route {
        op,
        ca_tag: tag.map(str::to_string),
        serial: None,
        id_no: None,
    };
    Some(match (m, s.as_slice()) {
        ("GET", ["ca"]) => route(O::GetCaList, None),
        ("POST", ["ca"]) => route(O::CreateCa, None),
        ("GET", ["ca", t]) => route(O::GetCa, Some(t)),
        ("PUT", ["ca", t]) => route(O::UpdateCa, Some(t)),
        ("DELETE", ["ca", t]) => route(O::DeleteCa, Some(t)),
        ("POST", ["ca", t, "activate"]) => route(O::ActivateSubCa, Some(t)),
        ("POST", ["ca", t, "users"]) => route(O::AddCaUser, Some(t)),
        ("GET", ["ca", t, "users"]) => route(O::GetCaUserList, Some(t)),
        ("DELETE", ["ca", t, "users", id]) => Route {
            id_no: Some((*id).to_string()),
            ..route(O::DeleteCaUser, Some(t))
        },
        ("PUT", ["ca", t, "urls"]) => route(O::CreateOcsp, Some(t)),
        ("DELETE", ["ca", t, "urls"]) => route(O::DeleteOcsp, Some(t)),
        ("GET", ["ca", t, "chain"]) => route(O::GetCaChain, Some(t)),
        ("GET", ["ca", t, "crl"]) => route(O::GetCaCrl, Some(t)),
        ("POST", ["ca", t, "crl", "rotate"]) => route(O::RotateCrl, Some(t)),
        ("GET", ["ca", t, "crl", "config"]) => route(O::GetCrlConfig, Some(t)),
        ("PUT", ["ca", t, "crl", "config"]) => route(O::UpdateCrlConfig, Some(t)),
        ("GET", ["ca", t, "cert"]) => route(O::GetEndCertList, Some(t)),
        ("POST", ["ca", t, "cert"]) => route(O::IssueEndCert, Some(t)),
        ("POST", ["ca", t, "cert", "sign"]) => route(O::SignEndCsr, Some(t)),
        ("GET", ["ca", t, "cert", serial]) => Route {
            serial: Some((*serial).to_string()),
            ..route(O::GetEndCert, Some(t))
        },
        ("POST", ["ca", t, "cert", serial, "revoke"]) => Route {
            serial: Some((*serial).to_string()),
            ..route(O::RevokeEndCert, Some(t))
        },
        ("GET", ["ca", t, "sub", "csr"]) => route(O::GetSubCsr, Some(t)),
        ("POST", ["ca", t, "sub", "sign"]) => route(O::SignSubCsr, Some(t)),
        ("POST", ["ca", t, "trim"]) => route(O::TrimCa, Some(t)),
        _ => return None,
    })
}

/// Whether an operation changes state (viewer keys may not call it).
pub(crate) fn is_write(op: Operation) -> bool {
    op.method() != Method::GET
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_route_matching_its_method() {
        let paths = [
            "/api/v1/ca",
            "/api/v1/ca/t",
            "/api/v1/ca/t/activate",
            "/api/v1/ca/t/users",
            "/api/v1/ca/t/users/i",
            "/api/v1/ca/t/urls",
            "/api/v1/ca/t/chain",
            "/api/v1/ca/t/crl",
            "/api/v1/ca/t/crl/rotate",
            "/api/v1/ca/t/crl/config",
            "/api/v1/ca/t/cert",
            "/api/v1/ca/t/cert/sign",
            "/api/v1/ca/t/cert/0a:0b",
            "/api/v1/ca/t/cert/0a:0b/revoke",
            "/api/v1/ca/t/sub/csr",
            "/api/v1/ca/t/sub/sign",
            "/api/v1/ca/t/trim",
        ];
        let mut found = Vec::new();
        for p in paths {
            for m in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
                if let Some(r) = match_route(&m, p) {
                    assert_eq!(r.op.method(), m, "{p}");
                    found.push(r.op);
                }
            }
        }
        found.sort();
        found.dedup();
        assert_eq!(found.len(), 24);
    }

    #[test]
    fn path_parameters_are_decoded_and_unknown_paths_do_not_route() {
        let r = match_route(&Method::GET, "/api/v1/ca/ab-cd/cert/0a%3A0b").unwrap();
        assert_eq!(r.ca_tag.as_deref(), Some("ab-cd"));
        assert_eq!(r.serial.as_deref(), Some("0a:0b"));
        let r = match_route(&Method::DELETE, "/api/v1/ca/t/users/u1").unwrap();
        assert_eq!(r.id_no.as_deref(), Some("u1"));
        assert!(match_route(&Method::GET, "/api/v2/ca").is_none());
        assert!(match_route(&Method::PATCH, "/api/v1/ca").is_none());
        assert!(match_route(&Method::GET, "/api/v1/ca/t/nope").is_none());
        assert!(match_route(&Method::POST, "/api/v1/ca/t/cert/0a:0b").is_none());
    }
}
