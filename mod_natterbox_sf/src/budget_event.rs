//! The `natterbox_sf::api_budget` CUSTOM event: an org's call-time API budget changed state
//! (normal, near, spent; see the engine's `budget`), so a dashboard or an operator's ESL client
//! hears that calls are being served older answers, and when that ends.

use natterbox_engine::budget::BudgetChange;

use crate::ffi::event;

pub const BUDGET_EVENT: &std::ffi::CStr = c"natterbox_sf::api_budget";

/// Fired from the engine's runtime thread that read the usage; FreeSWITCH's event queue takes
/// events from any thread.
pub fn fire(change: &BudgetChange) {
    event::fire_custom(
        BUDGET_EVENT,
        &[
            ("SF-Org", change.org),
            ("SF-Budget-State", change.to.as_str()),
            ("SF-Budget-Previous-State", change.from.as_str()),
            ("SF-API-Used", &change.used.to_string()),
            ("SF-API-Max", &change.max.to_string()),
            (
                "SF-Call-Time-Share-Percent",
                &change.share_percent.to_string(),
            ),
        ],
    );
}
