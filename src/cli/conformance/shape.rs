//! The JSON shape of every answer, as our emulator sends it and our types decode it, and the pure
//! comparison that names each field that is missing, unknown to us, or of another JSON type.

use serde_json::Value;
use std::fmt;

/// The JSON type a value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Str,
    /// A number.
    Num,
    /// `null` (write-only operations answer `data: null`).
    Null,
    /// An array of values of one kind.
    Arr(&'static Kind),
    /// An object with exactly these fields.
    Obj(&'static [Field]),
}

/// One field of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The wire name.
    pub name: &'static str,
    /// Its JSON type.
    pub kind: Kind,
    /// Whether our client relies on it (an absent required field is a deviation; an absent optional
    /// one is not, and either may be `null` only when optional).
    pub required: bool,
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}

/// `urlInfo`: the emulator sends each entry as an array of URLs.
const URL_INFO: &[Field] = &[
    req("ocsp", Kind::Arr(&Kind::Str)),
    req("crl", Kind::Arr(&Kind::Str)),
    req("ca", Kind::Arr(&Kind::Str)),
];

macro_rules! ca_info_fields {
    () => {
        [
            req("caId", Kind::Num),
            req("caTag", Kind::Str),
            req("alias", Kind::Str),
            opt("memo", Kind::Str),
            req("caType", Kind::Str),
            req("status", Kind::Str),
            req("signingCount", Kind::Num),
            req("rgstDate", Kind::Num),
            req("statusUpdateDate", Kind::Num),
            opt("destroyDate", Kind::Num),
            opt("nrn", Kind::Str),
            req("urlInfo", Kind::Obj(URL_INFO)),
        ]
    };
}

/// `caInfo`.
const CA_INFO: &[Field] = &ca_info_fields!();

/// `caCertInfo`.
const CA_CERT_INFO: &[Field] = &[
    req("caCertId", Kind::Num),
    req("commonName", Kind::Str),
    req("issuerName", Kind::Str),
    opt("country", Kind::Str),
    opt("stateProvince", Kind::Str),
    opt("locality", Kind::Str),
    opt("organization", Kind::Str),
    opt("organizationUnit", Kind::Str),
    req("notBeforeDate", Kind::Num),
    req("notAfterDate", Kind::Num),
    req("publicKeyAlgorithm", Kind::Str),
    req("signatureAlgorithm", Kind::Str),
    req("serialNo", Kind::Str),
    req("certPem", Kind::Str),
    req("chainPem", Kind::Str),
];

const CA_DETAIL_FIELDS: &[Field] = &[
    req("caInfo", Kind::Obj(CA_INFO)),
    req("caCertInfo", Kind::Obj(CA_CERT_INFO)),
];

/// Create CA, Get CA: `{caInfo, caCertInfo}`.
pub const CA_DETAIL: Kind = Kind::Obj(CA_DETAIL_FIELDS);

/// Get CA List.
pub const CA_LIST: Kind = Kind::Obj(&[
    req("totalCnt", Kind::Num),
    req("totalPageNo", Kind::Num),
    req("currentPageNo", Kind::Num),
    req("caInfoList", Kind::Arr(&CA_DETAIL)),
]);

const UPDATED_CA_FIELDS: [Field; 14] = {
    let flat = ca_info_fields!();
    let mut all = [req("caInfo", Kind::Obj(CA_INFO)); 14];
    let mut i = 0;
    while i < flat.len() {
        all[i] = flat[i];
        i += 1;
    }
    all[13] = req("caCertInfo", Kind::Obj(CA_CERT_INFO));
    all
};

/// Update CA: the emulator's superset of both documented forms, the flat `CaInfo` fields with
/// `caInfo` and `caCertInfo` beside them.
pub const UPDATED_CA: Kind = Kind::Obj(&UPDATED_CA_FIELDS);

/// Get CA User List: an array of users; `mbrNo` a number.
pub const CA_USERS: Kind = Kind::Arr(&Kind::Obj(&[
    req("loginId", Kind::Str),
    req("mbrNo", Kind::Num),
    req("idNo", Kind::Str),
]));

/// Get CRL Config, Update CRL Config: `expiry` a string of days.
pub const CRL_CONFIG: Kind = Kind::Obj(&[req("expiry", Kind::Str)]);

/// Get End Cert: `caChain` one string.
pub const END_CERT: Kind = Kind::Obj(&[
    req("serialNo", Kind::Str),
    req("commonName", Kind::Str),
    req("notBeforeDate", Kind::Num),
    req("notAfterDate", Kind::Num),
    req("publicKeyAlgorithm", Kind::Str),
    req("signatureAlgorithm", Kind::Str),
    req("certPem", Kind::Str),
    req("caChain", Kind::Str),
    req("ocspResponder", Kind::Str),
]);

/// Get End Cert List.
pub const END_CERT_LIST: Kind = Kind::Obj(&[
    req("totalCnt", Kind::Num),
    req("listCerts", Kind::Arr(&Kind::Str)),
    req("totalPageNo", Kind::Num),
    req("currentPageNo", Kind::Num),
]);

/// Sign End Csr, Sign Sub Csr: `caChain` an array.
pub const SIGNED: Kind = Kind::Obj(&[
    req("certificate", Kind::Str),
    req("caChain", Kind::Arr(&Kind::Str)),
    req("ocspResponder", Kind::Str),
    req("issuer", Kind::Str),
    req("serialNo", Kind::Str),
]);

/// Issue End Cert: the generated key too, and `caChain` one string.
pub const ISSUED: Kind = Kind::Obj(&[
    req("privateKey", Kind::Str),
    req("certificate", Kind::Str),
    req("caChain", Kind::Str),
    req("ocspResponder", Kind::Str),
    req("issuer", Kind::Str),
    req("serialNo", Kind::Str),
]);

/// Get CA Chain, Get CA CRL: one PEM string.
pub const PEM: Kind = Kind::Str;

/// Write-only operations: `data: null`.
pub const NONE: Kind = Kind::Null;

/// Every shape, for the tests.
#[cfg(test)]
pub const ALL: &[(&str, Kind)] = &[
    ("ca_detail", CA_DETAIL),
    ("ca_list", CA_LIST),
    ("updated_ca", UPDATED_CA),
    ("ca_users", CA_USERS),
    ("crl_config", CRL_CONFIG),
    ("end_cert", END_CERT),
    ("end_cert_list", END_CERT_LIST),
    ("signed", SIGNED),
    ("issued", ISSUED),
    ("pem", PEM),
    ("none", NONE),
];

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Finding {
    /// A field our client relies on is absent.
    Missing(String),
    /// The service sent a field our types do not know.
    Unknown(String),
    /// The field has another JSON type.
    WrongType {
        /// Where.
        path: String,
        /// The type our types expect.
        expected: &'static str,
        /// The type the service sent.
        got: &'static str,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(path) => write!(f, "missing field {path}"),
            Self::Unknown(path) => write!(f, "unknown field {path} (our types do not know it)"),
            Self::WrongType {
                path,
                expected,
                got,
            } => write!(f, "{path}: expected {expected}, got {got}"),
        }
    }
}

/// The JSON type of a value, as a word.
#[must_use]
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Kind {
    /// The JSON type as a word.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Self::Str => "string",
            Self::Num => "number",
            Self::Null => "null",
            Self::Arr(_) => "array",
            Self::Obj(_) => "object",
        }
    }

    /// How many fields the shape names, nested ones included.
    #[must_use]
    pub fn field_count(self) -> usize {
        match self {
            Self::Obj(fields) => fields.iter().map(|f| 1 + f.kind.field_count()).sum(),
            Self::Arr(inner) => inner.field_count(),
            _ => 0,
        }
    }
}

/// Compares `value` with `kind`; `path` names the value in findings (`data`, `data.caInfo`, …;
/// array elements are `[]`). Findings come in document order, each once.
#[must_use]
pub fn compare(kind: Kind, value: &Value, path: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    walk(kind, value, path, &mut out);
    let mut seen = std::collections::HashSet::new();
    out.retain(|f| seen.insert(f.clone()));
    out
}

fn walk(kind: Kind, value: &Value, path: &str, out: &mut Vec<Finding>) {
    let wrong = |out: &mut Vec<Finding>| {
        out.push(Finding::WrongType {
            path: path.to_string(),
            expected: kind.word(),
            got: json_type(value),
        });
    };
    match (kind, value) {
        (Kind::Str, Value::String(_))
        | (Kind::Num, Value::Number(_))
        | (Kind::Null, Value::Null) => {}
        (Kind::Arr(inner), Value::Array(items)) => {
            for item in items {
                walk(*inner, item, &format!("{path}[]"), out);
            }
        }
        (Kind::Obj(fields), Value::Object(map)) => {
            for field in fields {
                let at = format!("{path}.{}", field.name);
                match map.get(field.name) {
                    None if field.required => out.push(Finding::Missing(at)),
                    None => {}
                    Some(Value::Null) if !field.required && field.kind != Kind::Null => {}
                    Some(v) => walk(field.kind, v, &at, out),
                }
            }
            for key in map.keys() {
                if !fields.iter().any(|f| f.name == key) {
                    out.push(Finding::Unknown(format!("{path}.{key}")));
                }
            }
        }
        _ => wrong(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A value of `kind` that conforms (arrays hold one element, every optional field is present).
    fn sample(kind: Kind) -> Value {
        match kind {
            Kind::Str => json!("text"),
            Kind::Num => json!(7),
            Kind::Null => Value::Null,
            Kind::Arr(inner) => json!([sample(*inner)]),
            Kind::Obj(fields) => Value::Object(
                fields
                    .iter()
                    .map(|f| (f.name.to_string(), sample(f.kind)))
                    .collect(),
            ),
        }
    }

    /// A value of another JSON type than `kind`.
    fn other_type(kind: Kind) -> Value {
        match kind {
            Kind::Num => json!("7"),
            Kind::Str | Kind::Null | Kind::Arr(_) | Kind::Obj(_) => json!(true),
        }
    }

    /// Every deviating variant of a conforming `kind` value, with the finding it must produce: an extra
    /// field in every object, every required field removed, every field of another type.
    fn deviations(kind: Kind, path: &str) -> Vec<(Value, Finding)> {
        let mut out = Vec::new();
        match kind {
            Kind::Obj(fields) => {
                let base = sample(kind);
                let mut extra = base.clone();
                extra["zzUnknown"] = json!(1);
                out.push((extra, Finding::Unknown(format!("{path}.zzUnknown"))));
                for f in fields {
                    let at = format!("{path}.{}", f.name);
                    if f.required {
                        let mut v = base.clone();
                        v.as_object_mut().unwrap().remove(f.name);
                        out.push((v, Finding::Missing(at.clone())));
                    }
                    let mut v = base.clone();
                    v[f.name] = other_type(f.kind);
                    let got = json_type(&v[f.name]);
                    out.push((
                        v,
                        Finding::WrongType {
                            path: at.clone(),
                            expected: f.kind.word(),
                            got,
                        },
                    ));
                    for (inner, finding) in deviations(f.kind, &at) {
                        let mut v = base.clone();
                        v[f.name] = inner;
                        out.push((v, finding));
                    }
                }
            }
            Kind::Arr(inner) => {
                for (v, finding) in deviations(*inner, &format!("{path}[]")) {
                    out.push((json!([v]), finding));
                }
            }
            Kind::Str | Kind::Num | Kind::Null => {}
        }
        out
    }

    #[test]
    fn a_conforming_answer_of_every_shape_has_no_finding() {
        for (name, kind) in ALL {
            assert_eq!(compare(*kind, &sample(*kind), "data"), vec![], "{name}");
        }
    }

    #[test]
    fn every_extra_missing_and_retyped_field_of_every_shape_is_reported_as_such() {
        let mut checked = 0;
        for (name, kind) in ALL {
            for (value, expected) in deviations(*kind, "data") {
                let found = compare(*kind, &value, "data");
                assert_eq!(found, vec![expected.clone()], "{name}: {value}");
                checked += 1;
            }
        }
        assert!(checked > 150, "{checked} deviations checked");
    }

    #[test]
    fn a_top_level_value_of_another_type_and_null_in_a_required_field_are_reported() {
        assert_eq!(
            compare(CA_USERS, &json!({"a": 1}), "data"),
            vec![Finding::WrongType {
                path: "data".into(),
                expected: "array",
                got: "object"
            }]
        );
        let mut detail = sample(CA_DETAIL);
        detail["caInfo"]["caTag"] = Value::Null;
        detail["caInfo"]["memo"] = Value::Null;
        assert_eq!(
            compare(CA_DETAIL, &detail, "data"),
            vec![Finding::WrongType {
                path: "data.caInfo.caTag".into(),
                expected: "string",
                got: "null"
            }]
        );
    }

    #[test]
    fn the_same_finding_in_several_array_elements_is_reported_once() {
        let list = json!([
            {"loginId": "a", "mbrNo": "1", "idNo": "x"},
            {"loginId": "b", "mbrNo": "2", "idNo": "y"}
        ]);
        let found = compare(CA_USERS, &list, "data");
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].to_string(),
            "data[].mbrNo: expected number, got string"
        );
    }

    #[test]
    fn the_update_ca_shape_is_the_flat_ca_info_with_both_nested_objects() {
        let Kind::Obj(fields) = UPDATED_CA else {
            panic!("an object")
        };
        let names: Vec<_> = fields.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), CA_INFO.len() + 2);
        assert!(
            names.contains(&"caTag") && names.contains(&"caInfo") && names.contains(&"caCertInfo")
        );
    }
}
