//! Calls parked at an Omni-Channel routing point (`sf_omni_route`), waiting for the agent
//! Salesforce picks. Each leaves exactly one way, whichever comes first: bridged to the agent
//! (the sidecar's `bridge_routed`, only before its wait is over), the dialplan's fallback
//! (`sf_omni_fallback`), or the caller hanging up. The last two must clear Salesforce's routing.

use std::collections::HashMap;

use parking_lot::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Parked {
    org: String,
    /// No bridge after this: the dialplan's fallback has the call.
    wait_until_ms: u64,
}

#[derive(Default)]
pub struct OmniParking {
    parked: Mutex<HashMap<String, Parked>>,
}

/// Bounds the table: a call whose hangup was never seen does not stay for ever.
const MAX_PARKED: usize = 100_000;

impl OmniParking {
    /// The call waits for an agent until `wait_until_ms`. Parking it again (the dialplan ran the
    /// routing point twice) starts a new wait.
    pub fn park(&self, call_uuid: &str, org: &str, wait_until_ms: u64) {
        let mut parked = self.parked.lock();
        if parked.len() >= MAX_PARKED {
            let oldest = parked
                .iter()
                .min_by_key(|(_, p)| p.wait_until_ms)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                parked.remove(&k);
            }
        }
        parked.insert(
            call_uuid.to_string(),
            Parked {
                org: org.to_string(),
                wait_until_ms,
            },
        );
    }

    /// The call goes to its agent: `Ok` once, only while it is parked and its wait is not over.
    pub fn take_for_bridge(&self, call_uuid: &str, now_ms: u64) -> Result<(), String> {
        let mut parked = self.parked.lock();
        match parked.get(call_uuid) {
            None => Err(format!(
                "call {call_uuid} is not waiting at an Omni-Channel routing point"
            )),
            Some(p) if now_ms >= p.wait_until_ms => Err(format!(
                "call {call_uuid} waited its time; the fallback has it"
            )),
            Some(_) => {
                parked.remove(call_uuid);
                Ok(())
            }
        }
    }

    /// The call leaves without an agent (fallback or hangup): its org when it was still parked,
    /// so its routing is cleared; `None` when it was never parked or already bridged.
    pub fn leave(&self, call_uuid: &str) -> Option<String> {
        self.parked.lock().remove(call_uuid).map(|p| p.org)
    }

    /// The org of a parked call.
    pub fn org_of(&self, call_uuid: &str) -> Option<String> {
        self.parked.lock().get(call_uuid).map(|p| p.org.clone())
    }

    pub fn len(&self) -> usize {
        self.parked.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_call_leaves_one_way_only() {
        let p = OmniParking::default();
        p.park("c-1", "acme", 1_000);
        assert!(p.take_for_bridge("c-1", 999).is_ok());
        assert!(p.take_for_bridge("c-1", 999).is_err(), "bridged once");
        assert_eq!(p.leave("c-1"), None, "a bridged call clears nothing");

        p.park("c-2", "acme", 1_000);
        assert!(p
            .take_for_bridge("c-2", 1_000)
            .unwrap_err()
            .contains("fallback"));
        assert_eq!(p.leave("c-2").as_deref(), Some("acme"));
        assert_eq!(p.leave("c-2"), None, "cleared once");

        assert!(p.take_for_bridge("never-parked", 0).is_err());
        assert!(p.is_empty());
    }
}
