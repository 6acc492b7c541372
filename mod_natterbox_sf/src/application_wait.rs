//! Waiting until a channel runs an application the module queued on it (`uuid_broadcast`), before
//! sending what only that application must read.
//!
//! Why: a broadcast to a bridged channel runs when its bridge next looks at its queue, and a
//! bridge that has just started looks only after its first 10 frames (200 ms,
//! `DEFAULT_LEAD_FRAMES` in FreeSWITCH 1.10.12's `switch_ivr_bridge.c`), while it passes the
//! channel's DTMF to the other party at once. att_xfer's conference key queued with the
//! broadcast could reach the customer instead of att_xfer.

use std::time::{Duration, Instant};

use natterbox_engine::agent_calls::RunningApplication;

use crate::ffi::api;

/// How long the application may take to start before the agent's command fails.
const START_DEADLINE: Duration = Duration::from_secs(3);
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Returns once `running.channel`'s `current_application_data` contains `running.marker`.
pub fn wait_until_running(running: &RunningApplication) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let output = api::execute(
            "uuid_getvar",
            &format!("{} current_application_data", running.channel),
        );
        let text = output.text.trim();
        if !output.ran || text.starts_with("-ERR") {
            return Err("the agent's leg is gone".into());
        }
        if text.contains(&running.marker) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("FreeSWITCH did not start the queued application in time".into());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
