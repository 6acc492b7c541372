//! Load and shutdown, in FreeSWITCH's order (mod_skel): config, runtime, interfaces, events on
//! load; the reverse on shutdown. The module's state is swapped in whole, so a module loaded
//! again into the same image starts from nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use natterbox_common::config::{Config, CONFIG_NAME};
use natterbox_engine::warnings::WarningLimiter;
use natterbox_engine::{Engine, ReloadReport};

use crate::budget_event::BUDGET_EVENT;
use crate::call_control::CommandThread;
use crate::ffi::entry::{
    on_channel_answer, on_channel_event, on_hangup_complete, on_reloadxml, sf_api, sf_create_app,
    sf_lookup_app, sf_omni_fallback_app, sf_omni_route_app, sf_presence_app, sf_query_app,
    sf_screen_pop_app, sf_search_app, sf_update_app, sf_upsert_app,
};
use crate::ffi::event::{self, Binding};
use crate::ffi::interface::{AppFlags, ModuleInterface, MODULE_NAME};
use crate::ffi::log::{self, Level};
use crate::ffi::{sys, xml};

/// The CUSTOM event fired after each lookup.
pub const LOOKUP_EVENT: &std::ffi::CStr = c"natterbox_sf::lookup";

pub struct ModuleState {
    pub engine: Engine,
    /// Failed-lookup warnings, rate-limited per org and cause.
    pub warnings: WarningLimiter,
    /// Calls waiting at an Omni-Channel routing point (`omni_route.rs`).
    pub omni_parking: natterbox_engine::omni_parking::OmniParking,
}

static STATE: ArcSwapOption<ModuleState> = ArcSwapOption::const_empty();
static BINDINGS: Mutex<Vec<Binding>> = Mutex::new(Vec::new());
static COMMAND_THREAD: Mutex<Option<CommandThread>> = Mutex::new(None);

const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

pub fn state() -> Option<Arc<ModuleState>> {
    STATE.load_full()
}

fn read_config() -> Result<Config, String> {
    let text = xml::config_text(CONFIG_NAME)?;
    Config::parse(&text).map_err(|e| format!("{CONFIG_NAME}: {e}"))
}

pub fn load(interface: &ModuleInterface) -> sys::switch_status_t {
    log::install();
    let config = match read_config() {
        Ok(config) => config,
        Err(e) => {
            log::log(Level::Error, &format!("mod_natterbox_sf not loaded: {e}"));
            return sys::switch_status_t::SWITCH_STATUS_FALSE;
        }
    };
    let orgs = config.orgs.len();
    let engine = match Engine::start(config) {
        Ok(engine) => engine,
        Err(e) => {
            log::log(Level::Error, &format!("mod_natterbox_sf not loaded: {e}"));
            return sys::switch_status_t::SWITCH_STATUS_FALSE;
        }
    };
    let flags = || AppFlags {
        no_media: true,
        routing_exec: true,
    };
    let registered = interface.add_app(
        c"sf_lookup",
        c"Look the caller up in Salesforce",
        c"Looks a phone number up in Salesforce (cached) and sets sf_* channel variables. Never answers the call.",
        c"[org=<org>] [profile=<profile>] [timeout_ms=<ms>] [number_var=<variable> | number=<rest of the data>]",
        sf_lookup_app,
        flags(),
    ) && interface.add_app(
        c"sf_query",
        c"Run a named SOQL query from the config",
        c"Runs a <query> of the org (cached) with its binds from channel variables and sets sf_query_status and sf_<name>_* variables. Never answers the call.",
        c"<query name> [org=<org>] [timeout_ms=<ms>]",
        sf_query_app,
        flags(),
    ) && interface.add_app(
        c"sf_search",
        c"Run a named SOSL search from the config",
        c"Runs a <search> of the org (cached) with its search term from a channel variable and sets sf_search_status and sf_<name>_* variables. Never answers the call.",
        c"<search name> [org=<org>] [timeout_ms=<ms>]",
        sf_search_app,
        flags(),
    ) && interface.add_app(
        c"sf_screen_pop",
        c"Pop the caller's Salesforce record on an agent's console",
        c"Sends a screen pop for this call to the sidecar, addressed to an agent's Salesforce user id and/or extension.",
        c"[org=<org>] [direction=inbound|outbound|internal] [agent=<user id> | extension=<ext>] (last, takes the rest of the data)",
        sf_screen_pop_app,
        flags(),
    ) && interface.add_app(
        c"sf_presence",
        c"Read an agent's presence",
        c"Sets sf_agent_presence to the agent's presence (Available, Busy, Away, Offline) as set from their console.",
        c"[org=<org>] agent=<user id or extension> (last, takes the rest of the data)",
        sf_presence_app,
        flags(),
    ) && interface.add_app(
        c"sf_create",
        c"Create a Salesforce record from a <write> in the org's config",
        c"Creates the record a <write op=\"create\"> declares, values from channel variables; sets sf_write_status and sf_create_id (sync) or hands it to the sidecar's outbox.",
        c"write=<name> [org=<org>] [timeout_ms=<ms>]",
        sf_create_app,
        flags(),
    ) && interface.add_app(
        c"sf_update",
        c"Update a Salesforce record from a <write> in the org's config",
        c"Updates the record a <write op=\"update\"> names by record-id, values from channel variables; sets sf_write_status.",
        c"write=<name> [org=<org>] [timeout_ms=<ms>]",
        sf_update_app,
        flags(),
    ) && interface.add_app(
        c"sf_upsert",
        c"Upsert a Salesforce record by External ID from a <write> in the org's config",
        c"Creates or updates the record a <write op=\"upsert\"> finds by its External ID; sets sf_write_status and sf_create_id.",
        c"write=<name> [org=<org>] [timeout_ms=<ms>]",
        sf_upsert_app,
        flags(),
    ) && interface.add_app(
        c"sf_omni_route",
        c"Hand the call to Salesforce Omni-Channel routing",
        c"Creates the call's VoiceCall and runs the org's Omni-Channel flow (through the sidecar); the call waits for the agent Salesforce picks until <omni-channel wait-seconds> (sets playback_timeout_sec for the hold music). Sets sf_omni_status. Never waits on Salesforce.",
        c"[org=<org>]",
        sf_omni_route_app,
        flags(),
    ) && interface.add_app(
        c"sf_omni_fallback",
        c"End a call's Omni-Channel routing: nobody accepted it",
        c"Run after the hold music of an sf_omni_route routing point: the call is no longer offered to agents and Salesforce's routing is cleared.",
        c"",
        sf_omni_fallback_app,
        flags(),
    ) && interface.add_api(
        c"sf",
        c"Salesforce lookups: status, metrics, lookup, cache, reload",
        c"status | metrics | lookup <org>[/<profile>] <number> | query <org> <name> [variable=value ...] | cache stats|flush [org]|invalidate <org> <object> <id>... | presence [org=<org>] agent=<agent> | reload",
        sf_api,
    );
    if !registered {
        log::log(
            Level::Error,
            "mod_natterbox_sf not loaded: cannot register its interfaces",
        );
        engine.shutdown(SHUTDOWN_WAIT);
        return sys::switch_status_t::SWITCH_STATUS_FALSE;
    }
    if !event::reserve_subclass(MODULE_NAME, BUDGET_EVENT) {
        log::log(
            Level::Warning,
            "natterbox_sf::api_budget events are reserved by another module; firing them anyway",
        );
    }
    engine.on_budget_change(crate::budget_event::fire);
    if !event::reserve_subclass(MODULE_NAME, LOOKUP_EVENT) {
        log::log(
            Level::Warning,
            "natterbox_sf::lookup events are reserved by another module; not firing them",
        );
    }
    crate::fleet_events::start(&engine);
    let inbox = engine.take_sidecar_inbox();
    STATE.store(Some(Arc::new(ModuleState {
        engine,
        warnings: WarningLimiter::default(),
        omni_parking: Default::default(),
    })));
    match inbox.and_then(CommandThread::start) {
        Some(thread) => {
            *COMMAND_THREAD.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        }
        None => log::log(
            Level::Error,
            "mod_natterbox_sf: cannot start the call-control thread; agents' commands will fail",
        ),
    }
    let mut bindings = BINDINGS.lock().unwrap_or_else(|e| e.into_inner());
    for (kind, callback) in [
        (
            sys::switch_event_types_t_SWITCH_EVENT_RELOADXML,
            on_reloadxml as event::Callback,
        ),
        (
            sys::switch_event_types_t_SWITCH_EVENT_CHANNEL_HANGUP_COMPLETE,
            on_hangup_complete,
        ),
        (
            sys::switch_event_types_t_SWITCH_EVENT_CHANNEL_PROGRESS,
            on_channel_event,
        ),
        (
            sys::switch_event_types_t_SWITCH_EVENT_CHANNEL_PROGRESS_MEDIA,
            on_channel_event,
        ),
        (
            sys::switch_event_types_t_SWITCH_EVENT_CHANNEL_ANSWER,
            on_channel_event,
        ),
        (
            sys::switch_event_types_t_SWITCH_EVENT_CHANNEL_BRIDGE,
            on_channel_event,
        ),
        (
            sys::switch_event_types_t_SWITCH_EVENT_CHANNEL_HOLD,
            on_channel_event,
        ),
        (
            sys::switch_event_types_t_SWITCH_EVENT_CHANNEL_UNHOLD,
            on_channel_event,
        ),
        (
            sys::switch_event_types_t_SWITCH_EVENT_CHANNEL_HANGUP_COMPLETE,
            on_channel_event,
        ),
        (
            sys::switch_event_types_t_SWITCH_EVENT_CHANNEL_ANSWER,
            on_channel_answer,
        ),
    ] {
        match Binding::bind(MODULE_NAME, kind, callback) {
            Some(binding) => bindings.push(binding),
            None => log::log(
                Level::Error,
                "mod_natterbox_sf: cannot bind to a core event",
            ),
        }
    }
    log::log(
        Level::Notice,
        &format!(
            "mod_natterbox_sf loaded: {orgs} org(s), headers from {}",
            env!("NATTERBOX_FS_HEADERS")
        ),
    );
    sys::switch_status_t::SWITCH_STATUS_SUCCESS
}

pub fn shutdown() -> sys::switch_status_t {
    for binding in BINDINGS.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        binding.unbind();
    }
    event::free_subclass(MODULE_NAME, LOOKUP_EVENT);
    event::free_subclass(MODULE_NAME, BUDGET_EVENT);
    crate::fleet_events::stop();
    // Before the state goes: a command in progress finishes with it.
    if let Some(thread) = COMMAND_THREAD
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        thread.stop();
    }
    let Some(mut state) = STATE.swap(None) else {
        return sys::switch_status_t::SWITCH_STATUS_SUCCESS;
    };
    // An API command or app that began before the swap may still hold the state briefly.
    let deadline = Instant::now() + SHUTDOWN_WAIT;
    let owned = loop {
        match Arc::try_unwrap(state) {
            Ok(owned) => break Some(owned),
            Err(shared) if Instant::now() < deadline => {
                state = shared;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => break None,
        }
    };
    let stopped = owned.is_some_and(|s| s.engine.shutdown(SHUTDOWN_WAIT));
    if stopped {
        log::log(Level::Notice, "mod_natterbox_sf stopped");
        sys::switch_status_t::SWITCH_STATUS_SUCCESS
    } else {
        log::log(
            Level::Crit,
            "mod_natterbox_sf: its threads did not stop in time; refusing to be unloaded",
        );
        sys::switch_status_t::SWITCH_STATUS_NOUNLOAD
    }
}

/// `RELOADXML` arrives on FreeSWITCH's event thread, which must only hand work over: the reload
/// (reading the config, building the HTTP client) runs on the engine's blocking pool.
pub fn reload_in_background(why: &'static str) {
    let Some(state) = state() else { return };
    if !state.engine.run_blocking(move || {
        let _ = reload(why);
    }) {
        log::log(
            Level::Warning,
            &format!("mod_natterbox_sf: config not reloaded ({why}): the module is stopping"),
        );
    }
}

/// Re-reads the config and applies it whole; a bad one keeps the running config.
pub fn reload(why: &str) -> Result<ReloadReport, String> {
    let state = state().ok_or("module is not running")?;
    let result = read_config().and_then(|config| state.engine.reload(config));
    match &result {
        Ok(report) => {
            log::log(
                Level::Notice,
                &format!(
                    "mod_natterbox_sf: config reloaded ({why}); orgs changed: [{}], cache entries dropped: {}",
                    report.changed_orgs.join(", "),
                    report.flushed_entries
                ),
            );
            if !report.restart_needed.is_empty() {
                log::log(
                    Level::Warning,
                    &format!(
                        "mod_natterbox_sf: {} change(s) take effect when the module is loaded again",
                        report.restart_needed.join(", ")
                    ),
                );
            }
        }
        Err(e) => log::log(
            Level::Error,
            &format!("mod_natterbox_sf: config not reloaded ({why}), keeping the running one: {e}"),
        ),
    }
    result
}
