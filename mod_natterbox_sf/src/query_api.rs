//! `sf query <org> <name> [variable=value …]`: a named query or search through the apps' code
//! path, answered as JSON. Each `variable=value` word gives the value of the bind read from
//! that channel variable (a bind's name works too); a word naming no bind, or a bind given
//! twice, is refused, so nothing in a value can add a setting.

use std::collections::HashMap;

use natterbox_engine::args::printable;
use natterbox_engine::{Engine, QueryAnswer, QueryRequest};
use serde_json::json;

pub fn query(engine: &Engine, org: &str, name: &str, words: &[&str]) -> String {
    let mut given: HashMap<&str, &str> = HashMap::new();
    for word in words {
        let Some((variable, value)) = word.split_once('=') else {
            return format!("-ERR \"{}\" is not variable=value\n", printable(word));
        };
        if given.insert(variable, value).is_some() {
            return format!("-ERR {} given twice\n", printable(variable));
        }
    }
    let snapshot = engine.snapshot();
    if let Some(q) = snapshot.orgs.get(org).and_then(|o| o.queries.get(name)) {
        let binds = &q.query.template.binds;
        if let Some(unknown) = given
            .keys()
            .find(|k| !binds.iter().any(|b| b.variable == **k || b.name == **k))
        {
            return format!(
                "-ERR {} {name} has no bind read from {}\n",
                q.query.kind.as_str(),
                printable(unknown)
            );
        }
    }
    let request = QueryRequest {
        org: Some(org.to_string()),
        name: name.to_string(),
        kind: None,
        timeout: None,
    };
    let answer = engine.query_blocking(&request, &|bind| {
        given
            .get(bind.variable.as_str())
            .or_else(|| given.get(bind.name.as_str()))
            .map(|v| v.to_string())
    });
    crate::api::pretty(&answer_json(&answer))
}

fn answer_json(answer: &QueryAnswer) -> serde_json::Value {
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
        "rows": answer.outcome.as_ref().map_or(0, |o| o.match_count),
        "variables": vars,
        "detail": answer.detail,
    })
}
