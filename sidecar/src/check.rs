//! `--check-config`: parse the config the way the daemon would, then check what parsing cannot:
//! that secrets exist and keys parse, that the agent tokens and TLS files load, that hosts fit the
//! flows. Each finding says what to fix; secrets are never printed.

use std::path::Path;

use natterbox_common::config::{AuthConfig, Config};

#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for n in &self.notes {
            out.push_str(&format!("ok: {n}\n"));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        for e in &self.errors {
            out.push_str(&format!("error: {e}\n"));
        }
        out.push_str(if self.ok() {
            "configuration is valid\n"
        } else {
            "configuration is NOT valid\n"
        });
        out
    }
}

fn is_generic_login_host(url: &str) -> bool {
    let host = url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    host == "login.salesforce.com" || host == "test.salesforce.com"
}

pub fn check_file(path: &Path) -> Report {
    let mut report = Report::default();
    let config = match crate::load_config(path) {
        Ok(c) => c,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    report.notes.push(format!("{} parses", path.display()));
    check_config(&config, &mut report);
    report
}

pub fn check_config(config: &Config, report: &mut Report) {
    for org in &config.orgs {
        let ctx = format!("org \"{}\"", org.name);
        let Some(auth) = &org.auth else {
            report.warnings.push(format!(
                "{ctx}: no <auth>; the sidecar will not get tokens for it"
            ));
            if org.call_log.enabled || org.screen_pop.platform_event.is_some() {
                report.errors.push(format!(
                    "{ctx}: call logging or platform events are on but there is no <auth> to write them with"
                ));
            }
            continue;
        };
        match crate::oauth::check_credentials(auth) {
            Ok(()) => report.notes.push(format!("{ctx}: credentials load")),
            Err(e) => report.errors.push(format!("{ctx}: {e}")),
        }
        match auth {
            AuthConfig::JwtBearer { audience, .. } => {
                if !is_generic_login_host(audience) {
                    report.warnings.push(format!(
                        "{ctx}: audience \"{audience}\" is not https://login.salesforce.com or https://test.salesforce.com; Salesforce expects one of those even when posting to My Domain"
                    ));
                }
            }
            AuthConfig::ClientCredentials { .. } => {
                if is_generic_login_host(&org.login_url) {
                    report.errors.push(format!(
                        "{ctx}: client-credentials must be posted to the org's My Domain; set login-url to https://<mydomain>.my.salesforce.com"
                    ));
                }
            }
            AuthConfig::RefreshToken { .. } => {}
        }
        // The parser refused plain http:// unless allowed; say so loudly when it is.
        if org.allow_insecure_http {
            report.warnings.push(format!(
                "{ctx}: allow-insecure-http is on: tokens may travel over plain http:// (test emulators only, never Salesforce)"
            ));
        }
    }
    if let Some(path) = &config.sidecar.agent_tokens_file {
        match crate::pops::AgentDirectory::load(path) {
            Ok(dir) => {
                let orgs: Vec<&str> = config.orgs.iter().map(|o| o.name.as_str()).collect();
                report.warnings.extend(dir.org_warnings(&orgs));
                report
                    .notes
                    .push(format!("agent tokens file: {} agents", dir.len()))
            }
            Err(e) => report.errors.push(e),
        }
    } else {
        report
            .warnings
            .push("no agent-tokens-file: agent WebSocket clients cannot authenticate".to_string());
    }
    match (
        &config.sidecar.websocket_tls_cert,
        &config.sidecar.websocket_tls_key,
    ) {
        (Some(cert), Some(key)) => match crate::tls::tls_acceptor(cert, key) {
            Ok(_) => report
                .notes
                .push("WebSocket TLS certificate and key load".into()),
            Err(e) => report.errors.push(e),
        },
        (None, None) => {}
        _ => report
            .errors
            .push("set both websocket-tls-cert and websocket-tls-key, or neither".into()),
    }
    if let Some(owner) = &config.sidecar.token_file_owner {
        if let Err(e) = crate::tokens::resolve_owner(owner) {
            report.errors.push(e);
        }
    }
    if let Some(ca) = &config.settings.ca_file {
        if let Err(e) = std::fs::read(ca) {
            report.errors.push(format!("ca-file {}: {e}", ca.display()));
        }
    }
    let outbox_dir = config
        .sidecar
        .outbox_db
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let socket_dir = config
        .settings
        .event_socket
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for (what, dir) in [
        ("token-dir", config.settings.token_dir.clone()),
        ("outbox-db directory", outbox_dir),
        ("event-socket directory", socket_dir),
    ] {
        check_writable_dir(what, &dir, report);
    }
    if !config.sidecar.admin_listen.ip().is_loopback() {
        report.warnings.push(format!(
            "admin-listen {} is not loopback: the unauthenticated /metrics and /status are reachable from the network",
            config.sidecar.admin_listen
        ));
    }
    if !config.sidecar.agent_listen.ip().is_loopback()
        && config.sidecar.websocket_tls_cert.is_none()
    {
        report.warnings.push(format!(
            "agent-listen {} is not loopback and has no websocket-tls-cert: agent tokens and screen pops cross the network in clear",
            config.sidecar.agent_listen
        ));
    }
}

/// A directory the sidecar writes to: writable if it exists, creatable if not.
fn check_writable_dir(what: &str, dir: &Path, report: &mut Report) {
    use nix::unistd::{access, AccessFlags};
    if dir.as_os_str().is_empty() {
        return;
    }
    if dir.is_dir() {
        if access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_err() {
            report.errors.push(format!(
                "{what} {} is not writable by this user",
                dir.display()
            ));
        }
        return;
    }
    let existing = dir.ancestors().find(|a| a.exists());
    match existing {
        Some(blocker) if !blocker.is_dir() => report.errors.push(format!(
            "{what} {}: {} is not a directory",
            dir.display(),
            blocker.display()
        )),
        Some(parent) if access(parent, AccessFlags::W_OK | AccessFlags::X_OK).is_ok() => report
            .notes
            .push(format!("{what} {} will be created", dir.display())),
        _ => report.warnings.push(format!(
            "{what} {} does not exist and cannot be created by this user (systemd's StateDirectory/RuntimeDirectory create the defaults)",
            dir.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_generic_login_hosts() {
        assert!(is_generic_login_host("https://login.salesforce.com"));
        assert!(is_generic_login_host("https://test.salesforce.com/"));
        assert!(!is_generic_login_host("https://acme.my.salesforce.com"));
    }
}
