//! Kubernetes API errors in words, for conditions, events and logs: kube's own `Display` of an API
//! error appends a `Debug` dump of the whole `Status`, which is noise to a user.

/// What the API server said (`message (HTTP code reason)`), or the error's text when it is not an
/// API answer.
#[must_use]
pub fn kube_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                String::new()
            } else {
                format!(" {}", status.reason)
            };
            format!("{} (HTTP {}{reason})", status.message, status.code)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::kube_message;

    #[test]
    fn an_api_error_reads_as_the_servers_message_without_a_debug_dump() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 403, "reason": "Forbidden",
            "message": "secrets \"ncp\" is forbidden: User \"x\" cannot get resource \"secrets\""
        }))
        .expect("status");
        let error = kube::Error::Api(Box::new(status));
        assert!(
            error.to_string().contains("Status {"),
            "kube's own text dumps Debug"
        );
        let shown = kube_message(&error);
        assert_eq!(
            shown,
            "secrets \"ncp\" is forbidden: User \"x\" cannot get resource \"secrets\" (HTTP 403 Forbidden)"
        );
        assert!(!shown.contains('{'), "{shown}");
    }
}
