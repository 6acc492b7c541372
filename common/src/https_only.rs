//! Salesforce URLs (login and instance) must be `https://`: a token or a caller's number sent over
//! plain HTTP is readable by anyone on the path. `allow-insecure-http="true"` (per org, or in
//! `<settings>` for every org) lets `http://` through, for test emulators only.

/// Accepts `url` when it is `https://`, or `http://` with `allow_insecure_http`; otherwise says
/// what is wrong and how to fix it. `what` names the URL in the message (`login-url`).
pub fn check(what: &str, url: &str, allow_insecure_http: bool) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("https") => Ok(()),
        Some("http") if allow_insecure_http => Ok(()),
        Some("http") => Err(format!(
            "{what} \"{url}\" is plain http://; use https:// (allow-insecure-http=\"true\" \
             permits http:// for a test emulator, never for Salesforce)"
        )),
        _ => Err(format!("{what} \"{url}\" must be an https:// URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn https_always_http_only_when_allowed() {
        assert!(check("login-url", "https://login.salesforce.com", false).is_ok());
        assert!(check("login-url", "HTTPS://login.salesforce.com", false).is_ok());
        let refused = check("login-url", "http://127.0.0.1:1", false).unwrap_err();
        assert!(refused.contains("allow-insecure-http"), "{refused}");
        assert!(check("login-url", "http://127.0.0.1:1", true).is_ok());
        for bad in ["ftp://x", "login.salesforce.com", ""] {
            assert!(check("login-url", bad, true).is_err(), "{bad}");
        }
    }
}
