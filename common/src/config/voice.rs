//! Service Cloud Voice per org: where a call's record goes (`<call-log record="…">`) and how the
//! sidecar reaches the org's Telephony Integration REST API (`<service-cloud-voice …>`).
//!
//! ```xml
//! <call-log enabled="true" record="voicecall"/>
//! <service-cloud-voice scrt-url="https://acme.my.salesforce-scrt.com" org-id="00D…"
//!     call-center="NatterboxCC" provider="Natterbox" private-key-file="/etc/natterbox/scv.pem"/>
//! ```

use super::{err, required, secret, ConfigError, SecretRef};
use crate::xml::Element;

/// Which Salesforce record a call becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallRecord {
    /// A Task (`TaskSubtype=Call`) through the REST API.
    #[default]
    Task,
    /// A VoiceCall through the Telephony Integration REST API.
    VoiceCall,
    Both,
}

impl CallRecord {
    pub fn parse(word: &str, ctx: &str) -> Result<CallRecord, ConfigError> {
        match word {
            "task" => Ok(CallRecord::Task),
            "voicecall" => Ok(CallRecord::VoiceCall),
            "both" => Ok(CallRecord::Both),
            other => err(format!(
                "{ctx}: record=\"{other}\": expected task, voicecall or both"
            )),
        }
    }

    pub fn wants_task(self) -> bool {
        matches!(self, CallRecord::Task | CallRecord::Both)
    }

    pub fn wants_voicecall(self) -> bool {
        matches!(self, CallRecord::VoiceCall | CallRecord::Both)
    }
}

/// `<service-cloud-voice>`: the JWT's claims and the key that signs it (Salesforce's Voice
/// Developer Guide, "Telephony Integration REST API Authorization").
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceConfig {
    /// `https://<MyDomain>.my.salesforce-scrt.com`, without `/telephony/v1`.
    pub scrt_url: String,
    /// The JWT's `iss`: the org id where the contact center is set up.
    pub org_id: String,
    /// The JWT's `sub` and the body's `callCenterApiName`.
    pub call_center: String,
    /// The `Telephony-Provider-Name` header.
    pub provider: String,
    /// The telephony provider's RSA private key (PEM); its certificate is on the CallCenter.
    pub private_key: SecretRef,
    /// `<omni-channel>`: calls at an `sf_omni_route` routing point go to Omni-Channel.
    pub omni: Option<OmniConfig>,
}

/// `<omni-channel flow="…" fallback-queue="…" wait-seconds="…"/>` inside
/// `<service-cloud-voice>`: the omniFlow request's `flowDevName` and `fallbackQueue`, and how
/// long a parked call waits for an agent before the dialplan goes on to its fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OmniConfig {
    pub flow: Option<String>,
    pub fallback_queue: Option<String>,
    pub wait_seconds: u32,
}

pub const OMNI_WAIT_DEFAULT_S: u32 = 30;
pub const OMNI_WAIT_MAX_S: u32 = 600;

fn parse_omni(element: &Element, ctx: &str) -> Result<OmniConfig, ConfigError> {
    let ctx = format!("{ctx} <omni-channel>");
    let name = |attr: &str| -> Result<Option<String>, ConfigError> {
        match element.attr(attr) {
            None => Ok(None),
            Some(v)
                if is_developer_name(v)
                    || (v.starts_with("00G")
                        && v.len() >= 15
                        && v.bytes().all(|b| b.is_ascii_alphanumeric())) =>
            {
                Ok(Some(v.to_string()))
            }
            Some(v) => err(format!(
                "{ctx}: {attr}=\"{v}\": expected a developer name (letters, digits, _) or a queue id (00G…)"
            )),
        }
    };
    let flow = name("flow")?;
    let fallback_queue = name("fallback-queue")?;
    if flow.is_none() && fallback_queue.is_none() {
        return err(format!(
            "{ctx}: needs flow=\"…\" (the Omni-Channel flow's API name) or fallback-queue=\"…\""
        ));
    }
    let wait_seconds = match element.attr("wait-seconds") {
        None => OMNI_WAIT_DEFAULT_S,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=OMNI_WAIT_MAX_S).contains(&n) => n,
            _ => {
                return err(format!(
                    "{ctx}: wait-seconds=\"{v}\": expected 1 to {OMNI_WAIT_MAX_S}"
                ))
            }
        },
    };
    Ok(OmniConfig {
        flow,
        fallback_queue,
        wait_seconds,
    })
}

fn is_org_id(id: &str) -> bool {
    (id.len() == 15 || id.len() == 18)
        && id.starts_with("00D")
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_developer_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 80
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.as_bytes()[0].is_ascii_alphabetic()
}

pub fn parse_voice(
    element: &Element,
    org_ctx: &str,
    allow_insecure_http: bool,
) -> Result<VoiceConfig, ConfigError> {
    let ctx = format!("{org_ctx} <service-cloud-voice>");
    let scrt_url = required(element, "scrt-url", org_ctx)?
        .trim_end_matches('/')
        .to_string();
    crate::https_only::check("scrt-url", &scrt_url, allow_insecure_http)
        .map_err(|e| ConfigError(format!("{ctx}: {e}")))?;
    let org_id = required(element, "org-id", org_ctx)?.to_string();
    if !is_org_id(&org_id) {
        return err(format!(
            "{ctx}: org-id=\"{org_id}\": expected the org's 15- or 18-character id (00D…)"
        ));
    }
    let call_center = required(element, "call-center", org_ctx)?.to_string();
    if !is_developer_name(&call_center) {
        return err(format!(
            "{ctx}: call-center=\"{call_center}\": expected the contact center's API name"
        ));
    }
    let provider = required(element, "provider", org_ctx)?.to_string();
    if provider.chars().any(char::is_control) || provider.len() > 255 {
        return err(format!("{ctx}: provider=\"…\" must be one line of text"));
    }
    let private_key = secret(element, "private-key", org_ctx)?.ok_or_else(|| {
        ConfigError(format!(
            "{ctx}: needs private-key-file=\"…\" or private-key-env=\"…\""
        ))
    })?;
    let omni = element
        .child("omni-channel")
        .map(|o| parse_omni(o, &ctx))
        .transpose()?;
    Ok(VoiceConfig {
        scrt_url,
        org_id,
        call_center,
        provider,
        private_key,
        omni,
    })
}

/// The org's `record=` with the `<service-cloud-voice>` it needs.
pub fn parse_record(
    call_log: Option<&Element>,
    org: &Element,
    org_ctx: &str,
    allow_insecure_http: bool,
) -> Result<(CallRecord, Option<VoiceConfig>), ConfigError> {
    let record = match call_log.and_then(|c| c.attr("record")) {
        None => CallRecord::Task,
        Some(word) => CallRecord::parse(word, &format!("{org_ctx} <call-log>"))?,
    };
    let voice = org
        .child("service-cloud-voice")
        .map(|v| parse_voice(v, org_ctx, allow_insecure_http))
        .transpose()?;
    if record.wants_voicecall() && voice.is_none() {
        return err(format!(
            "{org_ctx}: <call-log record=\"voicecall\"> or \"both\" needs <service-cloud-voice scrt-url=… org-id=… call-center=… provider=… private-key-file=…>"
        ));
    }
    Ok((record, voice))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice(omni: &str) -> Result<VoiceConfig, ConfigError> {
        let xml = format!(
            r#"<service-cloud-voice scrt-url="https://acme.my.salesforce-scrt.com" org-id="00DEm0000000001"
                 call-center="NatterboxCC" provider="Natterbox" private-key-env="SCV_KEY">{omni}</service-cloud-voice>"#
        );
        parse_voice(&crate::xml::parse(&xml).unwrap(), "org acme", false)
    }

    #[test]
    fn omni_channel_is_optional_and_checked() {
        assert_eq!(voice("").unwrap().omni, None);
        let omni = voice(r#"<omni-channel flow="Inbound_Voice" fallback-queue="Support"/>"#)
            .unwrap()
            .omni
            .unwrap();
        assert_eq!(omni.flow.as_deref(), Some("Inbound_Voice"));
        assert_eq!(omni.fallback_queue.as_deref(), Some("Support"));
        assert_eq!(omni.wait_seconds, OMNI_WAIT_DEFAULT_S);
        let queue_only =
            voice(r#"<omni-channel fallback-queue="00G5e000000AbCd" wait-seconds="45"/>"#)
                .unwrap()
                .omni
                .unwrap();
        assert_eq!(queue_only.flow, None);
        assert_eq!(queue_only.wait_seconds, 45);
        for (bad, says) in [
            (r#"<omni-channel/>"#, "flow="),
            (r#"<omni-channel flow="a b"/>"#, "flow=\"a b\""),
            (
                r#"<omni-channel flow="F" wait-seconds="0"/>"#,
                "wait-seconds",
            ),
            (
                r#"<omni-channel flow="F" wait-seconds="601"/>"#,
                "wait-seconds",
            ),
        ] {
            let e = voice(bad).unwrap_err().0;
            assert!(
                e.contains(says) && e.contains("<omni-channel>"),
                "{bad}: {e}"
            );
        }
    }
}
