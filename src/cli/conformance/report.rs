//! The conformance report: one section per call (our expectation, the service's answer, a verdict per
//! check), printed as tables or as JSON with the raw answers, certificates and keys redacted.

use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The answer is what our client and the emulator expect.
    Conforms,
    /// The answer differs: the emulator (or the client) needs correcting.
    Deviates,
    /// An answer recorded for the record; nothing of ours depends on it.
    Observed,
    /// Not run (what it needs is missing; the answer says why).
    Skipped,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Self::Conforms => "ok",
            Self::Deviates => "DEVIATES",
            Self::Observed => "observed",
            Self::Skipped => "skipped",
        }
    }
}

/// One check of one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Stable name of the check within its section (`fields`, `decode`, `lists_intermediate`, …).
    pub check: String,
    /// What we expect.
    pub expectation: String,
    /// What the service answered.
    pub answer: String,
    /// The verdict.
    pub verdict: Verdict,
}

impl Row {
    /// A row.
    #[must_use]
    pub fn new(
        check: impl Into<String>,
        expectation: impl Into<String>,
        answer: impl Into<String>,
        verdict: Verdict,
    ) -> Self {
        Self {
            check: check.into(),
            expectation: expectation.into(),
            answer: answer.into(),
            verdict,
        }
    }

    /// `Conforms` when `ok`, else `Deviates`.
    #[must_use]
    pub fn judged(
        check: impl Into<String>,
        expectation: impl Into<String>,
        answer: impl Into<String>,
        ok: bool,
    ) -> Self {
        let verdict = if ok {
            Verdict::Conforms
        } else {
            Verdict::Deviates
        };
        Self::new(check, expectation, answer, verdict)
    }
}

/// The raw answer of one call, redacted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Raw {
    /// `METHOD path?query`.
    pub request: String,
    /// HTTP status.
    pub http_status: u16,
    /// The body, with certificates, CRLs, CSRs and keys replaced by a note.
    pub body: Value,
}

/// One call and its checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    /// Stable id (`get_ca`, `write.revoke_intermediate`, …): with a row's check, the name a
    /// deviation of the emulator refers to.
    pub id: String,
    /// Human title.
    pub title: String,
    /// The checks.
    pub rows: Vec<Row>,
    /// The raw answers (none when no call was made).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<Raw>,
}

impl Section {
    /// An empty section.
    #[must_use]
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            rows: Vec::new(),
            raw: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Whether every row conforms (or was only observed or skipped).
    #[must_use]
    pub fn conforms(&self) -> bool {
        self.rows.iter().all(|r| r.verdict != Verdict::Deviates)
    }
}

/// What happened to the throwaway CA of `--write`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cleanup {
    /// Its tag.
    pub ca_tag: String,
    /// Its alias.
    pub alias: String,
    /// Whether it is gone.
    pub deleted: bool,
    /// How to delete it by hand, when it is not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub manual_steps: Vec<String>,
}

impl Cleanup {
    /// The steps to delete a CA by hand.
    #[must_use]
    pub fn manual_steps_for(ca_tag: &str, alias: &str) -> Vec<String> {
        vec![
            format!(
                "the throwaway CA {ca_tag} (alias {alias}) could not be deleted; delete it by hand:"
            ),
            format!("  ncp-pca-issuer pca update {ca_tag} --status DESTROYING"),
            format!("  ncp-pca-issuer pca delete {ca_tag}"),
            format!(
                "  or in the NCP console: Private CA > {alias} > Delete (it is removed 72 hours after it turns DESTROYING otherwise)"
            ),
            format!("  then check that it is gone: ncp-pca-issuer pca get {ca_tag}"),
        ]
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The endpoint checked.
    pub endpoint: String,
    /// `read-only` or `write`.
    pub mode: &'static str,
    /// Whether every check conforms and the cleanup succeeded.
    pub conforms: bool,
    /// Counts per verdict.
    pub summary: Summary,
    /// The sections, in the order the calls were made.
    pub sections: Vec<Section>,
    /// The throwaway CA of `--write`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<Cleanup>,
}

/// Counts per verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Conforming checks.
    pub conforms: usize,
    /// Deviating checks.
    pub deviates: usize,
    /// Observed answers.
    pub observed: usize,
    /// Skipped checks.
    pub skipped: usize,
}

impl Report {
    /// Builds the report, counting verdicts.
    #[must_use]
    pub fn new(
        endpoint: String,
        mode: &'static str,
        sections: Vec<Section>,
        cleanup: Option<Cleanup>,
    ) -> Self {
        let mut summary = Summary::default();
        for row in sections.iter().flat_map(|s| &s.rows) {
            match row.verdict {
                Verdict::Conforms => summary.conforms += 1,
                Verdict::Deviates => summary.deviates += 1,
                Verdict::Observed => summary.observed += 1,
                Verdict::Skipped => summary.skipped += 1,
            }
        }
        let conforms = summary.deviates == 0 && cleanup.as_ref().is_none_or(|c| c.deleted);
        Self {
            endpoint,
            mode,
            conforms,
            summary,
            sections,
            cleanup,
        }
    }

    /// Every `section.check` name, in order.
    #[must_use]
    pub fn check_names(&self) -> Vec<String> {
        self.sections
            .iter()
            .flat_map(|s| s.rows.iter().map(move |r| format!("{}.{}", s.id, r.check)))
            .collect()
    }

    /// The report as tables: one per section, then the summary and, when the throwaway CA is left,
    /// the steps to delete it by hand.
    #[must_use]
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "NCP Private CA conformance of {} ({})",
            self.endpoint, self.mode
        );
        for section in &self.sections {
            let _ = writeln!(out, "\n== {} [{}]", section.title, section.id);
            let header = ["VERDICT", "CHECK", "EXPECTATION", "ANSWER"].map(str::to_string);
            let rows: Vec<[String; 4]> = section
                .rows
                .iter()
                .map(|r| {
                    [
                        r.verdict.word().to_string(),
                        r.check.clone(),
                        r.expectation.clone(),
                        r.answer.clone(),
                    ]
                })
                .collect();
            let mut widths = header.clone().map(|h| h.chars().count());
            for row in &rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            for row in std::iter::once(&header).chain(&rows) {
                let line: Vec<String> = row
                    .iter()
                    .zip(widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect();
                out.push_str(line.join("  ").trim_end());
                out.push('\n');
            }
        }
        let s = self.summary;
        let _ = writeln!(
            out,
            "\n{} conform, {} deviate, {} observed, {} skipped",
            s.conforms, s.deviates, s.observed, s.skipped
        );
        if let Some(cleanup) = &self.cleanup {
            if cleanup.deleted {
                let _ = writeln!(
                    out,
                    "throwaway CA {} ({}) deleted",
                    cleanup.ca_tag, cleanup.alias
                );
            } else {
                for line in &cleanup.manual_steps {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        let _ = writeln!(
            out,
            "{}",
            if self.conforms {
                "RESULT: conforms"
            } else {
                "RESULT: does not conform; attach the output of `-o json` to a bug report"
            }
        );
        out
    }
}

/// Replaces every certificate, CRL, CSR and key in an answer by a note saying what was there.
#[must_use]
pub fn redact(value: &Value) -> Value {
    match value {
        Value::String(s) if s.contains("-----BEGIN ") => Value::String(pem_note(s)),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if k.to_ascii_lowercase().contains("privatekey") {
                        Value::String("<redacted>".into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `<redacted PEM: 2 x CERTIFICATE>` for a string holding PEM blocks.
fn pem_note(s: &str) -> String {
    let labels: Vec<&str> = s
        .split("-----BEGIN ")
        .skip(1)
        .map(|rest| rest.split("-----").next().unwrap_or(""))
        .collect();
    let mut counted: Vec<(&str, usize)> = Vec::new();
    for label in labels {
        // Whatever the label says, a key's label is not repeated in full.
        let label = if label.contains("PRIVATE KEY") {
            "PRIVATE KEY"
        } else {
            label
        };
        match counted.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => counted.push((label, 1)),
        }
    }
    let parts: Vec<String> = counted.iter().map(|(l, n)| format!("{n} x {l}")).collect();
    format!("<redacted PEM: {}>", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn certificates_keys_and_crls_are_redacted_and_everything_else_is_kept() {
        let body = json!({"code": "SUCCESS", "data": {
            "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "caChain": ["-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n"],
            "privateKey": "-----BEGIN EC PRIVATE KEY-----\nSECRET\n-----END EC PRIVATE KEY-----",
            "crl": "-----BEGIN X509 CRL-----\nC\n-----END X509 CRL-----",
            "serialNo": "0a:1b"
        }});
        let shown = redact(&body).to_string();
        assert!(
            !shown.contains("MIIB") && !shown.contains("SECRET"),
            "{shown}"
        );
        assert!(!shown.contains("-----BEGIN"), "{shown}");
        assert!(shown.contains("0a:1b"), "{shown}");
        assert!(shown.contains("2 x CERTIFICATE"), "{shown}");
        assert!(shown.contains("1 x X509 CRL"), "{shown}");
        assert_eq!(redact(&body)["data"]["privateKey"], "<redacted>");
    }

    #[test]
    fn a_deviating_row_or_a_failed_cleanup_makes_the_report_fail_and_the_steps_are_printed() {
        let mut s = Section::new("get_ca", "Get CA");
        s.push(Row::judged("fields", "x", "x", true));
        s.push(Row::new("v1", "x", "refused", Verdict::Observed));
        let ok = Report::new("http://e".into(), "read-only", vec![s.clone()], None);
        assert!(ok.conforms);
        assert!(ok.to_table().contains("RESULT: conforms"));
        let left = Cleanup {
            ca_tag: "t-1".into(),
            alias: "a".into(),
            deleted: false,
            manual_steps: Cleanup::manual_steps_for("t-1", "a"),
        };
        let failed = Report::new("http://e".into(), "write", vec![s.clone()], Some(left));
        assert!(!failed.conforms);
        assert!(
            failed
                .to_table()
                .contains("ncp-pca-issuer pca update t-1 --status DESTROYING")
        );
        s.push(Row::judged("decode", "x", "y", false));
        let bad = Report::new("http://e".into(), "read-only", vec![s], None);
        assert!(!bad.conforms);
        assert_eq!(bad.summary.deviates, 1);
        assert_eq!(
            bad.check_names(),
            ["get_ca.fields", "get_ca.v1", "get_ca.decode"]
        );
    }
}
