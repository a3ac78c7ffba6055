//! HTTP-level tests of the NCP Private CA emulator: raw requests signed with `ncp::signing`, sent with
//! reqwest to an emulator started in-process.

use ncp_pca_issuer::emulator::{self, EmulatorConfig, EmulatorHandle, FaultKind, FaultRule, Stats};
use ncp_pca_issuer::ncp::messages::{self, ServiceMessage};
use ncp_pca_issuer::ncp::operation::Operation;
use ncp_pca_issuer::ncp::signing::{self, Credentials};
use ncp_pca_issuer::ncp::types::{
    CaDetail, CaList, CaStatus, EndCert, EndCertList, IssuedCert, KeyType, SubCsr,
};
use ncp_pca_issuer::pki::{self, Name, NameAttr, PrivateKey, San};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const AK: &str = "EMULATORTESTACCESSKEY";
const SK: &str = "emulator-test-secret-key-0123456789";

fn config() -> EmulatorConfig {
    let mut c = EmulatorConfig::new(Credentials::new(AK, SK));
    c.test_controls = true;
    c.viewer_credentials = Some(Credentials::new("VIEWERKEY", "viewer-secret"));
    c
}

fn now_ms() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string()
}

/// A raw answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<String>,
}

impl Answer {
    /// `data` of a SUCCESS envelope.
    fn data(self) -> Value {
        assert_eq!(self.status, 200, "{:?}", self.body);
        assert_eq!(self.body["code"], "SUCCESS", "{:?}", self.body);
        assert_eq!(self.body["msg"], "Success");
        self.body["data"].clone()
    }

    fn typed<T: serde::de::DeserializeOwned>(self) -> T {
        serde_json::from_value(self.data()).expect("answer matches the client's wire types")
    }

    /// Asserts a service error envelope with the message verbatim.
    fn assert_service(&self, m: ServiceMessage) {
        assert_eq!(self.status, m.http_status, "{m:?} / {:?}", self.body);
        assert_eq!(self.body["msg"], m.msg, "{:?}", self.body);
        assert_eq!(self.body["code"], m.code);
        assert!(self.body["data"].is_null());
    }

    /// Asserts a gateway error envelope.
    fn assert_gateway(&self, status: u16, code: &str, message: &str) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.body["error"]["errorCode"], code, "{:?}", self.body);
        assert_eq!(self.body["error"]["message"], message);
        assert!(self.body["error"]["details"].is_string());
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    creds: Credentials,
}

impl Api {
    fn new(emu: &EmulatorHandle) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: emu.base_url().to_string(),
            creds: Credentials::new(AK, SK),
        }
    }

    fn request(
        &self,
        method: Method,
        target: &str,
        body: Option<&Value>,
    ) -> reqwest::RequestBuilder {
        let ts = now_ms();
        let sig = self.creds.sign(method.as_str(), target, &ts);
        let mut rb = self
            .http
            .request(method, format!("{}{target}", self.base))
            .header("content-type", "application/json")
            .header(signing::HEADER_TIMESTAMP, ts)
            .header(signing::HEADER_ACCESS_KEY, &self.creds.access_key)
            .header(signing::HEADER_SIGNATURE_V2, sig);
        if let Some(b) = body {
            rb = rb.body(b.to_string());
        }
        rb
    }

    async fn send(&self, method: Method, target: &str, body: Option<&Value>) -> Answer {
        answer(
            self.request(method, target, body)
                .send()
                .await
                .expect("request sent"),
        )
        .await
    }

    async fn get(&self, target: impl AsRef<str>) -> Answer {
        self.send(Method::GET, target.as_ref(), None).await
    }

    async fn post(&self, target: impl AsRef<str>, body: Value) -> Answer {
        self.send(Method::POST, target.as_ref(), Some(&body)).await
    }

    async fn put(&self, target: impl AsRef<str>, body: Value) -> Answer {
        self.send(Method::PUT, target.as_ref(), Some(&body)).await
    }

    async fn delete(&self, target: impl AsRef<str>) -> Answer {
        self.send(Method::DELETE, target.as_ref(), None).await
    }

    async fn create_ca(&self, query: &str, alias: &str, key_type: &str, period: &str) -> CaDetail {
        self.post(
            &format!("/api/v1/ca?{query}"),
            json!({"alias": alias, "keyType": key_type, "period": period,
                   "x509Parameters": {"commonName": format!("{alias} CA"), "organization": "Example", "country": "KR"}}),
        )
        .await
        .typed()
    }

    async fn root(&self, alias: &str) -> String {
        self.create_ca("caType=PRIVATE_ROOT", alias, "EC256", "MAX")
            .await
            .ca_info
            .ca_tag
    }

    async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self
            .http
            .request(method, format!("{}/_emulator/{path}", self.base));
        if let Some(b) = body {
            rb = rb.body(b.to_string());
        }
        let resp = rb.send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        body,
        retry_after,
    }
}

fn csr(key: &PrivateKey, cn: &str, sans: &[San]) -> String {
    pki::create_csr(
        &Name::new().with(NameAttr::CommonName, cn),
        sans,
        key,
        false,
    )
    .unwrap()
}

fn ec_csr(cn: &str) -> String {
    csr(&PrivateKey::generate(KeyType::Ec256).unwrap(), cn, &[])
}

#[tokio::test]
async fn gateway_rejects_bad_credentials_with_the_401_envelope_and_accepts_naver_sdk_signatures() {
    let emu = emulator::spawn(config()).await.unwrap();
    let api = Api::new(&emu);
    let url = format!("{}/api/v1/ca?pageNo=1", emu.base_url());
    let target = "/api/v1/ca?pageNo=1";
    let send = |headers: Vec<(&'static str, String)>| {
        let mut rb = api.http.get(&url);
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        async move { answer(rb.send().await.unwrap()).await }
    };
    let ts = now_ms();
    let good_sig = api.creds.sign("GET", target, &ts);
    let full = |ts: &str, ak: &str, sig: &str| {
        vec![
            (signing::HEADER_TIMESTAMP, ts.to_string()),
            (signing::HEADER_ACCESS_KEY, ak.to_string()),
            (signing::HEADER_SIGNATURE_V2, sig.to_string()),
        ]
    };

    send(full(&ts, AK, &good_sig)).await.data();

    for missing in 0..3 {
        let mut h = full(&ts, AK, &good_sig);
        h.remove(missing);
        send(h)
            .await
            .assert_gateway(401, "200", "Authentication Failed");
    }
    send(full("yesterday", AK, &good_sig)).await.assert_gateway(
        401,
        "200",
        "Authentication Failed",
    );
    let stale = (ts.parse::<i64>().unwrap() - 301_000).to_string();
    let stale_sig = api.creds.sign("GET", target, &stale);
    send(full(&stale, AK, &stale_sig))
        .await
        .assert_gateway(401, "200", "Authentication Failed");
    let other = Credentials::new("UNKNOWNKEY", SK);
    send(full(&ts, "UNKNOWNKEY", &other.sign("GET", target, &ts)))
        .await
        .assert_gateway(401, "200", "Authentication Failed");
    let wrong = Credentials::new(AK, "not-the-secret").sign("GET", target, &ts);
    send(full(&ts, AK, &wrong))
        .await
        .assert_gateway(401, "200", "Authentication Failed");

    // NAVER's Go SDK: header -v1, signature over the path without the query string.
    let sdk_sig = api.creds.sign("GET", "/api/v1/ca", &ts);
    let list: CaList = send(vec![
        (signing::HEADER_TIMESTAMP, ts.clone()),
        (signing::HEADER_ACCESS_KEY, AK.to_string()),
        (signing::HEADER_SIGNATURE_V1, sdk_sig),
    ])
    .await
    .typed();
    assert_eq!(list.current_page_no, 1);

    // A read-only viewer key may read but not write.
    let viewer = Credentials::new("VIEWERKEY", "viewer-secret");
    send(full(&ts, "VIEWERKEY", &viewer.sign("GET", target, &ts)))
        .await
        .data();
    let resp = api
        .http
        .post(format!("{}/api/v1/ca?caType=PRIVATE_ROOT", emu.base_url()))
        .header(signing::HEADER_TIMESTAMP, &ts)
        .header(signing::HEADER_ACCESS_KEY, "VIEWERKEY")
        .header(
            signing::HEADER_SIGNATURE_V2,
            viewer.sign("POST", "/api/v1/ca?caType=PRIVATE_ROOT", &ts),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    answer(resp)
        .await
        .assert_gateway(401, "210", "Permission Denied");

    api.get("/api/v1/nothing-here")
        .await
        .assert_gateway(404, "300", "Not Found Exception");
    api.send(Method::PATCH, "/api/v1/ca", None)
        .await
        .assert_gateway(404, "300", "Not Found Exception");

    let stats: Stats =
        serde_json::from_value(api.control(Method::GET, "stats", None).await).unwrap();
    assert_eq!(stats.calls(Operation::GetCaList).rejected, 7);
    assert_eq!(stats.calls(Operation::GetCaList).success, 3);
}

/// Every message of `ncp::messages` the emulator can produce, hit once and checked verbatim.
#[tokio::test]
async fn every_documented_error_the_emulator_can_produce_is_answered_verbatim() {
    let mut seen = BTreeSet::new();
    let mut expect = |a: Answer, m: ServiceMessage| {
        a.assert_service(m);
        seen.insert(m.msg);
    };

    let mut small = config();
    small.max_cas = 2;
    small.max_issuances_per_ca = 1;
    let emu_small = emulator::spawn(small).await.unwrap();
    let api_small = Api::new(&emu_small);
    let r = api_small.root("limited1").await;
    api_small
        .post(
            &format!("/api/v1/ca/{r}/cert/sign"),
            json!({"csrPem": ec_csr("a")}),
        )
        .await
        .data();
    expect(
        api_small
            .post(
                &format!("/api/v1/ca/{r}/cert/sign"),
                json!({"csrPem": ec_csr("b")}),
            )
            .await,
        messages::SIGNING_LIMIT_EXCEEDED,
    );
    api_small.root("limited2").await;
    let third = json!({"alias": "limited3", "keyType": "EC256", "period": "1", "x509Parameters": {"commonName": "x"}});
    expect(
        api_small
            .post("/api/v1/ca?caType=PRIVATE_ROOT", third)
            .await,
        messages::CA_LIMIT_EXCEEDED,
    );
    drop(emu_small);

    let emu = emulator::spawn(config()).await.unwrap();
    let api = Api::new(&emu);
    let root = api
        .create_ca("caType=PRIVATE_ROOT", "root1", "EC256", "365")
        .await
        .ca_info
        .ca_tag;
    let sub = api
        .create_ca(
            &format!("caType=PRIVATE_SUB&issuerTag={root}"),
            "sub1",
            "EC256",
            "100",
        )
        .await;
    let sub_tag = sub.ca_info.ca_tag.clone();
    let pending = api
        .create_ca("caType=PRIVATE_SUB", "pending1", "EC256", "30")
        .await
        .ca_info
        .ca_tag;

    // Create CA.
    let create = |q: &str, body: Value| api.post(format!("/api/v1/ca?{q}"), body);
    let body = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut b = json!({"alias": "newca1", "keyType": "EC256", "period": "10", "x509Parameters": {"commonName": "n"}});
        f(b.as_object_mut().unwrap());
        b
    };
    expect(create("", body(&|_| {})).await, messages::CA_TYPE_MISSING);
    expect(
        create("caType=PUBLIC", body(&|_| {})).await,
        messages::INVALID_CA_TYPE,
    );
    expect(
        api.send(Method::POST, "/api/v1/ca?caType=PRIVATE_ROOT", None)
            .await,
        messages::BODY_MISSING,
    );
    let raw = api
        .request(Method::POST, "/api/v1/ca?caType=PRIVATE_ROOT", None)
        .body("{\"alias\": ")
        .send()
        .await
        .unwrap();
    expect(answer(raw).await, messages::INVALID_REQUEST);
    expect(
        create(
            "caType=PRIVATE_ROOT",
            body(&|b| {
                b.remove("alias");
            }),
        )
        .await,
        messages::ALIAS_MISSING,
    );
    expect(
        create(
            "caType=PRIVATE_ROOT",
            body(&|b| {
                b.insert("alias".into(), json!("a23456789012345X"));
            }),
        )
        .await,
        messages::ALIAS_TOO_LONG,
    );
    expect(
        create(
            "caType=PRIVATE_ROOT",
            body(&|b| {
                b.insert("alias".into(), json!("1abc"));
            }),
        )
        .await,
        messages::INVALID_INPUT,
    );
    expect(
        create(
            "caType=PRIVATE_ROOT",
            body(&|b| {
                b.insert("alias".into(), json!("root1"));
            }),
        )
        .await,
        messages::ALIAS_EXISTS,
    );
    expect(
        create(
            "caType=PRIVATE_ROOT",
            body(&|b| {
                b.insert("memo".into(), json!("m".repeat(300)));
            }),
        )
        .await,
        messages::MEMO_TOO_LONG,
    );
    expect(
        create(
            "caType=PRIVATE_ROOT",
            body(&|b| {
                b.remove("keyType");
            }),
        )
        .await,
        messages::INVALID_KEY_TYPE,
    );
    expect(
        create(
            "caType=PRIVATE_ROOT",
            body(&|b| {
                b.insert("keyType".into(), json!("RSA1024"));
            }),
        )
        .await,
        messages::INVALID_KEY_TYPE,
    );
    expect(
        create(
            "caType=PRIVATE_ROOT",
            body(&|b| {
                b.remove("period");
            }),
        )
        .await,
        messages::INVALID_PERIOD,
    );
    expect(
        create(
            "caType=PRIVATE_ROOT",
            body(&|b| {
                b.insert("period".into(), json!("3651"));
            }),
        )
        .await,
        messages::INVALID_PERIOD,
    );
    expect(
        create(
            "caType=PRIVATE_ROOT",
            body(&|b| {
                b.remove("x509Parameters");
            }),
        )
        .await,
        messages::X509_PARAMETERS_MISSING,
    );
    expect(
        create(
            "caType=PRIVATE_ROOT",
            body(&|b| {
                b.insert("x509Parameters".into(), json!({"organization": "o"}));
            }),
        )
        .await,
        messages::COMMON_NAME_MISSING,
    );
    expect(
        create(
            "caType=PRIVATE_SUB&issuerTag=nope0000-nope0000",
            body(&|_| {}),
        )
        .await,
        messages::CA_NOT_FOUND,
    );
    let long_sub = body(&|b| {
        b.insert("period".into(), json!("366"));
    });
    expect(
        create(&format!("caType=PRIVATE_SUB&issuerTag={root}"), long_sub).await,
        messages::CA_VALIDITY_EXCEEDED,
    );

    // Issue End Cert: the subject field limits.
    let issue = |params: Value| {
        api.post(
            format!("/api/v1/ca/{root}/cert"),
            json!({"x509Parameters": params}),
        )
    };
    let limits = [
        ("commonName", 65, messages::COMMON_NAME_TOO_LONG),
        ("organization", 65, messages::ORGANIZATION_TOO_LONG),
        (
            "organizationUnit",
            129,
            messages::ORGANIZATION_UNIT_TOO_LONG,
        ),
        ("stateProvince", 129, messages::STATE_PROVINCE_TOO_LONG),
        ("locality", 129, messages::LOCALITY_TOO_LONG),
        ("streetAddress", 129, messages::STREET_ADDRESS_TOO_LONG),
    ];
    for (field, len, msg) in limits {
        let mut p = json!({"commonName": "ok"});
        p[field] = json!("x".repeat(len));
        expect(issue(p).await, msg);
    }
    expect(
        issue(json!({"commonName": "ok", "ip": "10.0.0.999"})).await,
        messages::INVALID_IP,
    );
    expect(
        issue(json!({"commonName": "ok", "uri": "no scheme"})).await,
        messages::INVALID_URI,
    );

    // Sign End Csr.
    let sign = |tag: &str, b: Value| api.post(format!("/api/v1/ca/{tag}/cert/sign"), b);
    expect(sign(&root, json!({})).await, messages::CSR_MISSING);
    expect(sign(&root, json!({"csrPem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----"})).await, messages::INVALID_CSR);
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let p384_csr = rcgen::CertificateParams::new(vec!["x.example".to_string()])
        .unwrap()
        .serialize_request(&p384)
        .unwrap()
        .pem()
        .unwrap();
    expect(
        sign(&root, json!({"csrPem": p384_csr})).await,
        messages::UNSUPPORTED_KEY_TYPE,
    );
    let ec = ec_csr("legacy");
    expect(
        sign(
            &root,
            json!({"csrPem": ec, "keyType": "RSA", "keyBits": "2048"}),
        )
        .await,
        messages::KEY_TYPE_MISMATCH,
    );
    expect(
        sign(
            &root,
            json!({"csrPem": ec, "keyType": "ECDSA", "keyBits": "521"}),
        )
        .await,
        messages::KEY_BITS_MISMATCH,
    );
    expect(
        sign(&root, json!({"csrPem": ec, "keyType": "ECDSA"})).await,
        messages::KEY_BITS_MISSING,
    );
    expect(
        sign(&root, json!({"csrPem": ec, "keyBits": "384"})).await,
        messages::UNSUPPORTED_KEY_BITS,
    );
    expect(
        sign(&root, json!({"csrPem": ec, "period": "400"})).await,
        messages::CA_VALIDITY_EXCEEDED,
    );
    expect(
        sign("nope0000-nope0000", json!({"csrPem": ec})).await,
        messages::CA_NOT_FOUND,
    );
    expect(
        sign(&pending, json!({"csrPem": ec})).await,
        messages::INVALID_CA_STATUS,
    );
    let leaf: IssuedCert = sign(&sub_tag, json!({"csrPem": ec})).await.typed();

    // Sign Sub Csr: period required, MAX not allowed.
    let pending_csr: SubCsr = api
        .get(&format!("/api/v1/ca/{pending}/sub/csr"))
        .await
        .typed();
    let sign_sub = |b: Value| api.post(format!("/api/v1/ca/{root}/sub/sign"), b);
    expect(
        sign_sub(json!({"csrPem": pending_csr.csr_pem})).await,
        messages::INVALID_PERIOD,
    );
    expect(
        sign_sub(json!({"csrPem": pending_csr.csr_pem, "period": "MAX"})).await,
        messages::INVALID_PERIOD,
    );

    // Activate Sub CA.
    let activate = |b: Value| api.post(format!("/api/v1/ca/{pending}/activate"), b);
    let root_pem = api
        .get(&format!("/api/v1/ca/{root}/chain"))
        .await
        .data()
        .as_str()
        .unwrap()
        .to_string();
    expect(activate(json!({})).await, messages::CERT_MISSING);
    expect(
        activate(json!({"certPem": root_pem})).await,
        messages::CHAIN_MISSING,
    );
    expect(
        activate(json!({"certPem": "garbage", "caChainPem": root_pem})).await,
        messages::INVALID_CERTIFICATE_VALUE,
    );
    expect(
        activate(json!({"certPem": root_pem, "caChainPem": root_pem})).await,
        messages::INVALID_CERT,
    );
    let short: IssuedCert = sign_sub(json!({"csrPem": pending_csr.csr_pem, "period": "1"}))
        .await
        .typed();
    let chain_pem = short.ca_chain.concat();
    let other_root = api.root("other1").await;
    let other_pem = api
        .get(&format!("/api/v1/ca/{other_root}/chain"))
        .await
        .data();
    expect(
        activate(json!({"certPem": short.certificate, "caChainPem": other_pem})).await,
        messages::INVALID_CA_CHAIN,
    );
    emu.advance_clock(2 * 86_400_000);
    expect(
        activate(json!({"certPem": short.certificate, "caChainPem": chain_pem})).await,
        messages::EXPIRED_CERT,
    );
    emu.advance_clock(-2 * 86_400_000);

    // Update CA and Delete CA.
    expect(
        api.put(&format!("/api/v1/ca/{root}"), json!({})).await,
        messages::STATUS_MISSING,
    );
    expect(
        api.put(&format!("/api/v1/ca/{root}"), json!({"status": "ON"}))
            .await,
        messages::INVALID_STATUS_VALUE,
    );
    expect(
        api.delete(&format!("/api/v1/ca/{root}")).await,
        messages::INVALID_CA_STATUS,
    );
    api.put(
        &format!("/api/v1/ca/{other_root}"),
        json!({"status": "DEACTIVATED"}),
    )
    .await
    .data();
    let under_inactive = body(&|b| {
        b.insert("alias".into(), json!("sub9"));
    });
    expect(
        create(
            &format!("caType=PRIVATE_SUB&issuerTag={other_root}"),
            under_inactive,
        )
        .await,
        messages::INVALID_ISSUER_CA_STATUS,
    );

    // Certificates by serial.
    expect(
        api.get(&format!("/api/v1/ca/{root}/cert/not-hex")).await,
        messages::INVALID_SERIAL_NO,
    );
    expect(
        api.get(&format!("/api/v1/ca/{root}/cert/")).await,
        messages::SERIAL_NO_MISSING,
    );
    expect(
        api.get(&format!("/api/v1/ca/{root}/cert/01:02:03")).await,
        messages::CERT_NOT_FOUND,
    );
    let sub_serial = sub.ca_cert_info.serial_no.clone();
    expect(
        api.post(
            &format!("/api/v1/ca/{root}/cert/{sub_serial}/revoke"),
            json!({}),
        )
        .await,
        messages::CA_CERT_NOT_REVOCABLE,
    );
    api.post(
        &format!("/api/v1/ca/{sub_tag}/cert/{}/revoke", leaf.serial_no),
        json!({}),
    )
    .await
    .data();

    // Paths, pages, CRL config, OCSP, users.
    expect(api.get("/api/v1/ca//chain").await, messages::CA_TAG_MISSING);
    expect(
        api.get("/api/v1/ca/nope0000-nope0000").await,
        messages::CA_NOT_FOUND,
    );
    expect(
        api.get("/api/v1/ca?pageNo=0").await,
        messages::INVALID_PAGE_NO,
    );
    expect(
        api.get(&format!("/api/v1/ca/{root}/cert?pageNo=x")).await,
        messages::INVALID_PAGE_NO,
    );
    expect(
        api.get(&format!("/api/v1/ca/{root}/crl/config")).await,
        messages::CRL_CONFIG_NOT_FOUND,
    );
    expect(
        api.put(&format!("/api/v1/ca/{root}/crl/config"), json!({}))
            .await,
        messages::EXPIRY_MISSING,
    );
    expect(
        api.put(&format!("/api/v1/ca/{root}/urls"), json!({})).await,
        messages::OCSP_SERVERS_MISSING,
    );
    expect(
        api.post(&format!("/api/v1/ca/{root}/users"), json!({}))
            .await,
        messages::ID_NO_MISSING,
    );
    expect(
        api.post(
            &format!("/api/v1/ca/{root}/users"),
            json!({"idNo": "too-short"}),
        )
        .await,
        messages::INVALID_ID_NO,
    );
    expect(
        api.delete(&format!(
            "/api/v1/ca/{root}/users/6e4c1234-5678-90ab-cdef-1234567a9baa"
        ))
        .await,
        messages::INVALID_USER,
    );

    // The service's 500, by fault injection.
    emu.add_fault(
        FaultRule::new(FaultKind::Error500)
            .for_operation(Operation::GetCa)
            .times(1),
    );
    expect(
        api.get(&format!("/api/v1/ca/{root}")).await,
        messages::TEMPORARILY_UNAVAILABLE,
    );

    // Messages the emulator never produces: internal fields, and "Invalid status." (no trigger known).
    let never = [
        "ncloudInstanceNo is missing.",
        "tenant id is missing.",
        "caId is missing.",
        "token is missing.",
        "caId or caTag is missing.",
        "Invalid caId.",
        "Invalid tenant id.",
        "Invalid other.",
        "Invalid status.",
        "Invalid castore.",
        "Invalid ca.",
        "This castore already exists.",
        "This policy already exists.",
        "The castore doesn't exist.",
        "The policy doesn't exist.",
    ];
    let untested: Vec<&str> = messages::ALL
        .iter()
        .map(|m| m.msg)
        .filter(|m| !seen.contains(m) && !never.contains(m))
        .collect();
    assert!(untested.is_empty(), "messages never hit: {untested:#?}");
}

#[tokio::test]
async fn a_sign_end_csr_certificate_verifies_to_the_root_with_openssl_for_every_key_type() {
    let emu = emulator::spawn(config()).await.unwrap();
    let api = Api::new(&emu);
    let dir = tempfile::tempdir().unwrap();
    for (i, kt) in KeyType::ALL.into_iter().enumerate() {
        let root = api
            .create_ca(
                "caType=PRIVATE_ROOT",
                &format!("root{i}"),
                kt.as_str(),
                "MAX",
            )
            .await
            .ca_info
            .ca_tag;
        let sub = api
            .create_ca(
                &format!("caType=PRIVATE_SUB&issuerTag={root}"),
                &format!("sub{i}"),
                kt.as_str(),
                "365",
            )
            .await
            .ca_info
            .ca_tag;
        let key = PrivateKey::generate(kt).unwrap();
        let sans = [
            San::Dns("app.example.com".into()),
            San::Ip("10.1.2.3".parse().unwrap()),
        ];
        let signed: IssuedCert = api
            .post(
                &format!("/api/v1/ca/{sub}/cert/sign"),
                json!({"csrPem": csr(&key, "app", &sans), "period": "30"}),
            )
            .await
            .typed();
        assert_eq!(signed.ca_chain.len(), 2, "caChain = [issuing CA, root]");
        assert_eq!(signed.issuer, signed.ca_chain[0]);
        let leaf = pki::CertInfo::from_pem(&signed.certificate).unwrap();
        assert_eq!(leaf.serial.to_colon_hex(), signed.serial_no);
        assert_eq!(leaf.sans, sans);
        assert_eq!(leaf.public_key.spki_der(), key.spki_der().as_slice());
        assert_eq!((leaf.not_after - leaf.not_before).whole_days(), 30);

        let path = |name: &str| dir.path().join(format!("{kt}-{name}.pem"));
        std::fs::write(path("root"), &signed.ca_chain[1]).unwrap();
        std::fs::write(path("chain"), &signed.ca_chain[0]).unwrap();
        std::fs::write(path("leaf"), &signed.certificate).unwrap();
        let out = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-x509_strict")
            .arg("-purpose")
            .arg("sslserver")
            .arg("-CAfile")
            .arg(path("root"))
            .arg("-untrusted")
            .arg(path("chain"))
            .arg(path("leaf"))
            .output()
            .expect("openssl runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kt}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.trim_end().ends_with(": OK"), "{stdout}");
    }
}

#[tokio::test]
async fn a_revoked_serial_appears_in_the_signed_crl_and_crl_operations_renew_it() {
    let emu = emulator::spawn(config()).await.unwrap();
    let api = Api::new(&emu);
    let root = api.root("root1").await;
    let mut serials = Vec::new();
    for cn in ["one", "two"] {
        let s: IssuedCert = api
            .post(
                &format!("/api/v1/ca/{root}/cert/sign"),
                json!({"csrPem": ec_csr(cn), "period": "30"}),
            )
            .await
            .typed();
        serials.push(s.serial_no);
    }
    api.post(
        &format!("/api/v1/ca/{root}/cert/{}/revoke", serials[0]),
        json!({}),
    )
    .await
    .data();
    assert_eq!(emu.certificate_revoked(&root, &serials[0]), Some(true));

    let crl_pem = api
        .get(&format!("/api/v1/ca/{root}/crl"))
        .await
        .data()
        .as_str()
        .unwrap()
        .to_string();
    let der = pki::pem::decode_one(&crl_pem, &["X509 CRL"]).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
    let listed: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| {
            pki::Serial::from_bytes(r.raw_serial())
                .unwrap()
                .to_colon_hex()
        })
        .collect();
    assert_eq!(listed, vec![serials[0].clone()]);
    let ca_pem = api.get(&format!("/api/v1/ca/{root}/chain")).await.data();
    let ca = pki::CertInfo::from_pem(ca_pem.as_str().unwrap()).unwrap();
    pki::verify_signed_by(&der, ca.public_key.spki_der()).unwrap();
    let next = crl.next_update().unwrap().timestamp() - crl.last_update().timestamp();
    assert_eq!(next, 3 * 86_400, "default renewal: 3 days");

    // CRL config: at least 3 days; the CRL follows it.
    let bad = api
        .put(
            &format!("/api/v1/ca/{root}/crl/config"),
            json!({"expiry": "2"}),
        )
        .await;
    bad.assert_service(messages::INVALID_INPUT);
    let cfg = api
        .put(
            &format!("/api/v1/ca/{root}/crl/config"),
            json!({"expiry": "5"}),
        )
        .await
        .data();
    assert_eq!(cfg, json!({"expiry": "5"}));
    assert_eq!(
        api.get(&format!("/api/v1/ca/{root}/crl/config"))
            .await
            .data(),
        json!({"expiry": "5"})
    );
    let info = pki::CrlInfo::from_pem(
        api.get(&format!("/api/v1/ca/{root}/crl"))
            .await
            .data()
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        info.next_update.unwrap() - info.this_update,
        time::Duration::days(5)
    );

    // Rotate issues a new CRL; the unauthenticated distribution point serves the same one as DER.
    api.post(&format!("/api/v1/ca/{root}/crl/rotate"), json!({}))
        .await
        .data();
    let rotated = api.get(&format!("/api/v1/ca/{root}/crl")).await.data();
    assert_ne!(rotated.as_str().unwrap(), crl_pem);
    let ext = reqwest::get(format!("{}/ext/{root}/crl", emu.base_url()))
        .await
        .unwrap();
    assert_eq!(ext.headers()["content-type"], "application/pkix-crl");
    let ext_der = ext.bytes().await.unwrap();
    assert_eq!(pki::CrlInfo::from_der(&ext_der).unwrap().revoked.len(), 1);

    // Trim drops expired certificates, and with them their CRL entries.
    emu.advance_clock(40 * 86_400_000);
    api.post(&format!("/api/v1/ca/{root}/trim"), json!({}))
        .await
        .data();
    let list: EndCertList = api.get(&format!("/api/v1/ca/{root}/cert")).await.typed();
    assert_eq!(list.total_cnt, 0);
    let after = pki::CrlInfo::from_pem(
        api.get(&format!("/api/v1/ca/{root}/crl"))
            .await
            .data()
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(after.revoked.is_empty());
}

#[tokio::test]
async fn commit_then_lose_response_issues_the_certificate_while_the_client_times_out() {
    let emu = emulator::spawn(config()).await.unwrap();
    let api = Api::new(&emu);
    let root = api.root("root1").await;
    api.control(
        Method::POST,
        "faults",
        Some(json!({"operation": "sign_end_csr", "kind": "commit_then_lose_response", "count": 1})),
    )
    .await;

    let started = Instant::now();
    let result = api
        .request(
            Method::POST,
            &format!("/api/v1/ca/{root}/cert/sign"),
            Some(&json!({"csrPem": ec_csr("lost")})),
        )
        .timeout(Duration::from_millis(1500))
        .send()
        .await;
    let err = result.expect_err("the response is withheld");
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(1500));

    let stats: Stats =
        serde_json::from_value(api.control(Method::GET, "stats", None).await).unwrap();
    assert_eq!(stats.issued_by(&root), 1, "{stats:?}");
    let sign = stats.calls(Operation::SignEndCsr);
    assert_eq!((sign.total, sign.success, sign.lost), (1, 1, 1));
    let list: EndCertList = api.get(&format!("/api/v1/ca/{root}/cert")).await.typed();
    assert_eq!(
        list.total_cnt, 1,
        "the certificate exists and can be recovered"
    );
    let detail: CaDetail = api.get(&format!("/api/v1/ca/{root}")).await.typed();
    assert_eq!(detail.ca_info.signing_count, Some(1));

    // The rule was for one call only.
    api.post(
        &format!("/api/v1/ca/{root}/cert/sign"),
        json!({"csrPem": ec_csr("next")}),
    )
    .await
    .data();
    assert_eq!(emu.stats().issued_by(&root), 2);
}

#[tokio::test]
async fn injected_faults_answer_as_the_gateway_and_service_would() {
    let emu = emulator::spawn(config()).await.unwrap();
    let api = Api::new(&emu);
    let root = api.root("root1").await;
    let get = format!("/api/v1/ca/{root}");

    emu.add_fault(
        FaultRule::new(FaultKind::Throttle429)
            .for_operation(Operation::GetCa)
            .times(1),
    );
    let a = api.get(&get).await;
    a.assert_gateway(429, "410", "Throttle Limited");
    assert_eq!(a.retry_after.as_deref(), Some("1"));

    api.control(
        Method::POST,
        "faults",
        Some(json!([{"operation": "get_ca", "kind": "unavailable503", "count": 1}])),
    )
    .await;
    api.get(&get)
        .await
        .assert_gateway(503, "500", "Endpoint Error");

    emu.add_fault(
        FaultRule::latency(300)
            .for_operation(Operation::GetCa)
            .times(1),
    );
    let t = Instant::now();
    api.get(&get).await.data();
    assert!(t.elapsed() >= Duration::from_millis(300));

    emu.add_fault(FaultRule::new(FaultKind::Timeout).for_operation(Operation::IssueEndCert));
    let lost = api
        .request(
            Method::POST,
            &format!("{get}/cert"),
            Some(&json!({"x509Parameters": {"commonName": "x"}})),
        )
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(lost.unwrap_err().is_timeout());
    assert_eq!(
        emu.stats().issued_by(&root),
        0,
        "a timeout fault does not run the operation"
    );
    api.control(Method::DELETE, "faults", None).await;
    assert!(emu.faults().is_empty());
    let issued: IssuedCert = api
        .post(
            &format!("{get}/cert"),
            json!({"x509Parameters": {"commonName": "x"}}),
        )
        .await
        .typed();
    assert!(issued.private_key.is_some());

    // The clock: a DESTROYING CA disappears 72 hours later.
    api.put(&get, json!({"status": "DESTROYING"})).await.data();
    let clock = api
        .control(
            Method::POST,
            "clock",
            Some(json!({"advance_ms": 72 * 3_600_000 + 1_000})),
        )
        .await;
    assert!(clock["offset_ms"].as_i64().unwrap() > 72 * 3_600_000);
    api.get(&get).await.assert_service(messages::CA_NOT_FOUND);
    assert_eq!(emu.ca_status(&root), None);

    api.control(Method::POST, "reset", None).await;
    assert_eq!(emu.stats(), Stats::default());
    let list: CaList = api.get("/api/v1/ca").await.typed();
    assert_eq!(list.total_cnt, 0);
}

#[tokio::test]
async fn test_controls_are_not_served_unless_enabled() {
    let mut c = config();
    c.test_controls = false;
    let emu = emulator::spawn(c).await.unwrap();
    let resp = reqwest::get(format!("{}/_emulator/stats", emu.base_url()))
        .await
        .unwrap();
    answer(resp)
        .await
        .assert_gateway(404, "300", "Not Found Exception");

    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = emulator::serve(listener, config()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn all_24_operations_answer_in_the_shapes_the_client_reads() {
    let mut c = config();
    c.page_size = 2;
    let emu = emulator::spawn(c).await.unwrap();
    let api = Api::new(&emu);
    let root_detail = api
        .create_ca("caType=PRIVATE_ROOT", "root1", "RSA2048", "MAX")
        .await;
    let root = root_detail.ca_info.ca_tag.clone();
    assert_eq!(root_detail.ca_info.status, CaStatus::Active);
    assert_eq!(root_detail.ca_cert_info.public_key_algorithm, "RSA");
    assert_eq!(
        root_detail.ca_cert_info.signature_algorithm,
        "SHA256WithRSA"
    );
    let days = (root_detail.ca_cert_info.not_after_date.unwrap()
        - root_detail.ca_cert_info.not_before_date.unwrap())
        / 86_400_000;
    assert_eq!(days, 3650, "MAX for a root is 3650 days");
    assert_eq!(
        root_detail.ca_info.url_info.crl,
        vec![format!("{}/ext/{root}/crl", emu.base_url())]
    );

    let sub = api
        .create_ca(
            &format!("caType=PRIVATE_SUB&issuerTag={root}"),
            "sub1",
            "EC521",
            "365",
        )
        .await;
    assert_eq!(sub.ca_cert_info.issuer_name, "root1 CA");
    assert_eq!(
        pki::parse_certificates_pem(&sub.ca_cert_info.chain_pem)
            .unwrap()
            .len(),
        2
    );
    let sub_tag = sub.ca_info.ca_tag;
    let pending = api
        .create_ca("caType=PRIVATE_SUB", "pending1", "EC256", "30")
        .await;
    assert_eq!(pending.ca_info.status, CaStatus::Pending);
    let pending_tag = pending.ca_info.ca_tag;

    // Get CA, Get CA List (pages of 2).
    let got: CaDetail = api.get(&format!("/api/v1/ca/{root}")).await.typed();
    assert_eq!(got.ca_info.signing_count, Some(1));
    let page2: CaList = api.get("/api/v1/ca?pageNo=2").await.typed();
    assert_eq!(
        (
            page2.total_cnt,
            page2.total_page_no,
            page2.current_page_no,
            page2.ca_info_list.len()
        ),
        (3, 2, 2, 1)
    );

    // Get Sub CSR → Sign Sub Csr → Activate Sub CA.
    let csr: SubCsr = api
        .get(&format!("/api/v1/ca/{pending_tag}/sub/csr"))
        .await
        .typed();
    let signed: IssuedCert = api
        .post(
            &format!("/api/v1/ca/{sub_tag}/sub/sign"),
            json!({"period": "20", "csrPem": csr.csr_pem}),
        )
        .await
        .typed();
    assert_eq!(signed.ca_chain.len(), 2);
    let activated: CaDetail = api
        .post(
            &format!("/api/v1/ca/{pending_tag}/activate"),
            json!({"certPem": signed.certificate, "caChainPem": signed.ca_chain.concat()}),
        )
        .await
        .typed();
    assert_eq!(activated.ca_info.status, CaStatus::Active);
    let chain = api
        .get(&format!("/api/v1/ca/{pending_tag}/chain"))
        .await
        .data();
    assert_eq!(
        pki::parse_certificates_pem(chain.as_str().unwrap())
            .unwrap()
            .len(),
        3
    );

    // OCSP: urlInfo, ocspResponder and AIA.
    let ocsp = format!("{}/ext/{sub_tag}/ocsp", emu.base_url());
    api.put(
        &format!("/api/v1/ca/{sub_tag}/urls"),
        json!({"ocsp_servers": ocsp}),
    )
    .await
    .data();
    let with_ocsp: CaDetail = api.get(&format!("/api/v1/ca/{sub_tag}")).await.typed();
    assert_eq!(with_ocsp.ca_info.url_info.ocsp, vec![ocsp.clone()]);

    // Issue End Cert (caChain as a string), Sign End Csr, Get End Cert, Get End Cert List.
    let issued: IssuedCert = api
        .post(&format!("/api/v1/ca/{sub_tag}/cert"), json!({"keyType": "RSA2048", "period": "7", "x509Parameters": {"commonName": "svc", "altName": "svc.example"}}))
        .await
        .typed();
    assert!(issued.private_key.is_some());
    assert_eq!(issued.ocsp_responder, ocsp);
    let raw = api
        .post(
            &format!("/api/v1/ca/{sub_tag}/cert"),
            json!({"x509Parameters": {"commonName": "svc2"}}),
        )
        .await
        .data();
    assert!(
        raw["caChain"].is_string(),
        "Issue End Cert caChain is a string"
    );
    assert!(
        PrivateKey::from_pem(raw["privateKey"].as_str().unwrap())
            .unwrap()
            .key_type()
            == KeyType::Ec521,
        "defaults to the CA's key type"
    );
    let leaf = pki::CertInfo::from_pem(&issued.certificate).unwrap();
    assert!(String::from_utf8_lossy(&leaf.der).contains(&ocsp));
    let signed_leaf: IssuedCert = api
        .post(
            &format!("/api/v1/ca/{sub_tag}/cert/sign"),
            json!({"csrPem": ec_csr("c")}),
        )
        .await
        .typed();
    let end: EndCert = api
        .get(&format!(
            "/api/v1/ca/{sub_tag}/cert/{}",
            issued.serial_no.to_uppercase()
        ))
        .await
        .typed();
    assert_eq!(
        (
            end.serial_no.as_str(),
            end.common_name.as_str(),
            end.public_key_algorithm.as_str()
        ),
        (issued.serial_no.as_str(), "svc", "RSA")
    );
    assert_eq!(end.ca_chain.len(), 2);
    let list: EndCertList = api
        .get(&format!("/api/v1/ca/{sub_tag}/cert?pageNo=2"))
        .await
        .typed();
    assert_eq!(
        (list.total_cnt, list.total_page_no),
        (4, 2),
        "sub CA cert + 3 end certs"
    );
    assert_eq!(
        list.list_certs,
        vec![
            raw["serialNo"].as_str().unwrap().to_string(),
            signed_leaf.serial_no.clone()
        ]
    );

    // Revoke End Cert, Get CA CRL, Rotate CRL, Trim CA, CRL config.
    api.post(
        &format!("/api/v1/ca/{sub_tag}/cert/{}/revoke", signed_leaf.serial_no),
        json!({}),
    )
    .await
    .data();
    let crl = pki::CrlInfo::from_pem(
        api.get(&format!("/api/v1/ca/{sub_tag}/crl"))
            .await
            .data()
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(crl.is_revoked(&pki::Serial::parse(&signed_leaf.serial_no).unwrap()));
    api.post(&format!("/api/v1/ca/{sub_tag}/crl/rotate"), json!({}))
        .await
        .data();
    api.post(&format!("/api/v1/ca/{sub_tag}/trim"), json!({}))
        .await
        .data();
    api.put(
        &format!("/api/v1/ca/{sub_tag}/crl/config"),
        json!({"expiry": 4}),
    )
    .await
    .data();
    assert_eq!(
        api.get(&format!("/api/v1/ca/{sub_tag}/crl/config"))
            .await
            .data()["expiry"],
        "4"
    );
    api.delete(&format!("/api/v1/ca/{sub_tag}/urls"))
        .await
        .data();

    // Users.
    let id = "6e4c1234-5678-90ab-cdef-1234567a9baa";
    api.post(&format!("/api/v1/ca/{root}/users"), json!({"idNo": id}))
        .await
        .data();
    let users = api.get(&format!("/api/v1/ca/{root}/users")).await.data();
    assert_eq!(users[0]["idNo"], id);
    assert!(users[0]["mbrNo"].is_number());
    let typed: Vec<ncp_pca_issuer::ncp::types::CaUser> = serde_json::from_value(users).unwrap();
    assert_eq!(typed.len(), 1);
    api.delete(&format!("/api/v1/ca/{root}/users/{id}"))
        .await
        .data();

    // Update CA (nested answer) and Delete CA with its subordinates.
    let updated: ncp_pca_issuer::ncp::types::UpdatedCa = api
        .put(
            &format!("/api/v1/ca/{root}"),
            json!({"status": "DESTROYING", "memo": "bye"}),
        )
        .await
        .typed();
    assert_eq!(updated.ca_info.status, CaStatus::Destroying);
    assert_eq!(updated.ca_info.memo.as_deref(), Some("bye"));
    assert!(updated.ca_info.destroy_date.is_some());
    api.delete(&format!("/api/v1/ca/{root}")).await.data();
    let left: CaList = api.get("/api/v1/ca").await.typed();
    assert_eq!(left.total_cnt, 0, "the sub CAs went with the root");

    let stats = emu.stats();
    let called: Vec<Operation> = Operation::ALL
        .into_iter()
        .filter(|op| stats.calls(*op).success > 0)
        .collect();
    assert_eq!(
        called.len(),
        24,
        "every operation was exercised: {called:?}"
    );
}

#[tokio::test]
async fn state_survives_a_restart_with_a_private_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("emulator-state.json");
    let mut c = config();
    c.state_file = Some(file.clone());
    let emu = emulator::spawn(c.clone()).await.unwrap();
    let api = Api::new(&emu);
    let root = api.root("root1").await;
    let first: IssuedCert = api
        .post(
            &format!("/api/v1/ca/{root}/cert/sign"),
            json!({"csrPem": ec_csr("a")}),
        )
        .await
        .typed();
    emu.shutdown().await.unwrap();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let emu = emulator::spawn(c).await.unwrap();
    let api = Api::new(&emu);
    let again: IssuedCert = api
        .post(
            &format!("/api/v1/ca/{root}/cert/sign"),
            json!({"csrPem": ec_csr("b")}),
        )
        .await
        .typed();
    assert_eq!(again.issuer, first.issuer, "same CA, same key");
    let list: EndCertList = api.get(&format!("/api/v1/ca/{root}/cert")).await.typed();
    assert_eq!(list.total_cnt, 2);
}
