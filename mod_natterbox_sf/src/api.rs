//! The `sf` API command (fs_cli, event socket). Usage on empty input, `+OK`/`-ERR` answers,
//! JSON for figures; it needs no session.

use natterbox_engine::{LookupAnswer, LookupRequest};
use serde_json::json;

use crate::ffi::stream::Stream;
use crate::module;

/// How long `sf status` waits for the sidecar's view.
const SIDECAR_STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

const USAGE: &str = "USAGE: sf status | sf metrics | sf lookup <org>[/<profile>] <number> | sf query <org> <name> [variable=value …] | sf cache stats | sf cache flush [org] | sf cache invalidate <org> <object> <id>… | sf presence [org=<org>] agent=<user id or extension> | sf reload\n";

/// `lookup <org>[/<profile>] <number…>`: as with the dialplan applications, the number (which a
/// dialplan may expand into `${sf(lookup acme ${caller_id_number})}`) comes last and is the rest
/// of the command verbatim, so it can never name the profile. Org names have no `/`.
fn lookup_request(cmd: &str) -> Option<LookupRequest> {
    let rest = cmd.trim_start().strip_prefix("lookup")?;
    let rest = rest
        .strip_prefix(|c: char| c.is_ascii_whitespace())?
        .trim_start();
    let (target, number) = rest.split_once(|c: char| c.is_ascii_whitespace())?;
    let number = number.trim_start_matches(|c: char| c.is_ascii_whitespace());
    if number.is_empty() {
        return None;
    }
    let (org, profile) = match target.split_once('/') {
        Some((org, profile)) => (org, Some(profile.to_string())),
        None => (target, None),
    };
    Some(LookupRequest {
        org: Some(org.to_string()),
        number: number.to_string(),
        profile,
        timeout: None,
    })
}

pub fn sf(cmd: &str, stream: &mut Stream<'_>) {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let reply = match words.as_slice() {
        [] => USAGE.to_string(),
        ["reload"] => match module::reload("sf reload") {
            Ok(r) => format!(
                "+OK reloaded; orgs changed: [{}]; cache entries dropped: {}{}\n",
                r.changed_orgs.join(", "),
                r.flushed_entries,
                if r.restart_needed.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; needs a module reload for: {}",
                        r.restart_needed.join(", ")
                    )
                }
            ),
            Err(e) => format!("-ERR {e}\n"),
        },
        // An agent's presence: the bare state, for `${sf(presence org=acme agent=1001)}` in a
        // condition (no `org=`: the default org).
        ["presence", ..] => {
            let data = cmd
                .trim_start()
                .strip_prefix("presence")
                .unwrap_or_default();
            match crate::presence::lookup(data, None) {
                Ok(state) => state.to_string(),
                Err(e) => format!("-ERR {e}\n"),
            }
        }
        rest => match module::state() {
            None => "-ERR mod_natterbox_sf is not running\n".to_string(),
            Some(state) => match rest {
                ["status"] => {
                    let mut status = state.engine.status();
                    status["sidecar"] = state.engine.sidecar_status(SIDECAR_STATUS_TIMEOUT);
                    pretty(&status)
                }
                // The Prometheus text format, as the sidecar's /metrics serves it.
                ["metrics"] => state.engine.metrics_text(),
                ["lookup", ..] => match lookup_request(cmd) {
                    Some(request) => pretty(&answer_json(&state.engine.lookup_blocking(&request))),
                    None => format!("-ERR sf lookup <org>[/<profile>] <number>\n{USAGE}"),
                },
                ["query", org, name, binds @ ..] => {
                    crate::query_api::query(&state.engine, org, name, binds)
                }
                ["query", ..] => format!("-ERR sf query <org> <name> [variable=value …]\n{USAGE}"),
                ["cache", "stats"] => pretty(&state.engine.status()["cache"]),
                ["cache", "flush"] => match state.engine.flush(None) {
                    Ok(n) => format!("+OK flushed {n} entries\n"),
                    Err(e) => format!("-ERR {e}\n"),
                },
                ["cache", "flush", org] => match state.engine.flush(Some(org)) {
                    Ok(n) => format!("+OK flushed {n} entries of {org}\n"),
                    Err(e) => format!("-ERR {e}\n"),
                },
                ["cache", "invalidate", org, object, ids @ ..] if !ids.is_empty() => {
                    crate::fleet_events::invalidate(&state.engine, org, object, ids)
                }
                _ => format!("-ERR unknown command\n{USAGE}"),
            },
        },
    };
    stream.write(&reply);
}

pub(crate) fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

fn answer_json(answer: &LookupAnswer) -> serde_json::Value {
    let vars: serde_json::Map<String, serde_json::Value> = answer
        .outcome
        .iter()
        .flat_map(|o| o.vars.iter())
        .chain(answer.owner.iter().flat_map(|o| o.vars()))
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "status": answer.status.as_str(),
        "source": answer.source.map(|s| s.as_str()),
        "ms": answer.elapsed.as_millis() as u64,
        "org": answer.org,
        "e164": answer.e164.as_deref(),
        "match_count": answer.outcome.as_ref().map(|o| o.match_count).unwrap_or(0),
        "variables": vars,
        "detail": answer.detail,
    })
}
