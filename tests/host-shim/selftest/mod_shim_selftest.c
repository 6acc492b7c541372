/*
 * mod_shim_selftest: a minimal FreeSWITCH module that exercises every core function the host shim
 * provides, written the way a C module would be. It exists to test the shim, not FreeSWITCH.
 *
 *   app  selftest_app    (SAF_SUPPORT_NOMEDIA) sets variables, tries a refused one, fires a CUSTOM event
 *   app  selftest_sleep  (no flags: the core pre-answers) sleeps <data> ms
 *   api  selftest        "" | "sleep <ms>" | "fail" | "leak" | "config"
 */
#include <switch.h>
#include <unistd.h>

#define SUBCLASS "shimtest::ping"

SWITCH_MODULE_LOAD_FUNCTION(mod_shim_selftest_load);
SWITCH_MODULE_SHUTDOWN_FUNCTION(mod_shim_selftest_shutdown);
SWITCH_MODULE_DEFINITION(mod_shim_selftest, mod_shim_selftest_load, mod_shim_selftest_shutdown, NULL);

static struct {
	switch_event_node_t *reloadxml_node;
	switch_event_node_t *custom_node;
	switch_event_node_t *hangup_node;
	int leak;
} globals;

static void read_config(void)
{
	switch_xml_t xml, cfg;
	char *text;

	if (!(xml = switch_xml_open_cfg("selftest.conf", &cfg, NULL))) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "open of %s failed\n", "selftest.conf");
		return;
	}
	text = switch_xml_toxml_ex(cfg, SWITCH_FALSE, SWITCH_TRUE);
	switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_INFO, "config: %s\n", text);
	free(text);
	switch_xml_free(xml);
}

static void on_reloadxml(switch_event_t *event)
{
	(void) event;
	switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_INFO, "reloadxml seen\n");
	read_config();
}

static void on_custom(switch_event_t *event)
{
	switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_INFO, "custom seen caller=%s\n",
					  switch_str_nil(switch_event_get_header_idx(event, "caller", -1)));
}

static void on_hangup(switch_event_t *event)
{
	switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_INFO, "hangup seen uuid=%s cid=%s dest=%s dir=%s cause=%s result=%s\n",
					  switch_str_nil(switch_event_get_header_idx(event, "Unique-ID", -1)),
					  switch_str_nil(switch_event_get_header_idx(event, "Caller-Caller-ID-Number", -1)),
					  switch_str_nil(switch_event_get_header_idx(event, "Caller-Destination-Number", -1)),
					  switch_str_nil(switch_event_get_header_idx(event, "Call-Direction", -1)),
					  switch_str_nil(switch_event_get_header_idx(event, "Hangup-Cause", -1)),
					  switch_str_nil(switch_event_get_header_idx(event, "variable_selftest_result", -1)));
}

SWITCH_STANDARD_APP(selftest_app_function)
{
	switch_channel_t *channel = switch_core_session_get_channel(session);
	const char *cid = switch_channel_get_variable(channel, "caller_id_number");
	switch_event_t *event;

	switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_INFO, "app on %s uuid=%s cid=%s data=%s\n",
					  switch_channel_get_name(channel), switch_core_session_get_uuid(session), switch_str_nil(cid),
					  switch_str_nil(data));
	switch_channel_set_variable(channel, "selftest_result", "ok");
	switch_channel_set_variable(channel, "selftest_refused", "${danger}");
	switch_channel_set_variable_var_check(channel, "selftest_unchecked", "${allowed}", SWITCH_FALSE);
	switch_channel_set_variable(channel, "selftest_cid", cid);
	if (switch_event_create_subclass(&event, SWITCH_EVENT_CUSTOM, SUBCLASS) == SWITCH_STATUS_SUCCESS) {
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "caller", switch_str_nil(cid));
		switch_event_fire(&event);
	}
}

SWITCH_STANDARD_APP(selftest_sleep_function)
{
	int ms = zstr(data) ? 100 : atoi(data);
	switch_log_printf(SWITCH_CHANNEL_SESSION_LOG(session), SWITCH_LOG_DEBUG, "sleeping %d ms\n", ms);
	usleep((useconds_t) ms * 1000);
	switch_channel_set_variable(switch_core_session_get_channel(session), "selftest_slept", data);
}

SWITCH_STANDARD_API(selftest_api_function)
{
	(void) session;
	if (zstr(cmd)) {
		stream->write_function(stream, "-USAGE: selftest [sleep <ms>|fail|leak|config]\n");
		return SWITCH_STATUS_SUCCESS;
	}
	if (!strncmp(cmd, "sleep ", 6)) {
		usleep((useconds_t) atoi(cmd + 6) * 1000);
		stream->write_function(stream, "+OK slept %d\n", atoi(cmd + 6));
	} else if (!strcmp(cmd, "fail")) {
		stream->write_function(stream, "-ERR failing on purpose");
		return SWITCH_STATUS_FALSE;
	} else if (!strcmp(cmd, "leak")) {
		globals.leak = 1;
		stream->write_function(stream, "+OK will leak the reloadxml binding\n");
	} else if (!strcmp(cmd, "config")) {
		read_config();
		stream->write_function(stream, "+OK\n");
	} else {
		stream->write_function(stream, "+OK %s\n", cmd);
	}
	return SWITCH_STATUS_SUCCESS;
}

SWITCH_MODULE_LOAD_FUNCTION(mod_shim_selftest_load)
{
	switch_application_interface_t *app_interface;
	switch_api_interface_t *api_interface;

	memset(&globals, 0, sizeof(globals));
	*module_interface = switch_loadable_module_create_module_interface(pool, modname);

	if (switch_event_reserve_subclass(SUBCLASS) != SWITCH_STATUS_SUCCESS) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "Couldn't register subclass %s!\n", SUBCLASS);
		return SWITCH_STATUS_TERM;
	}
	if (switch_event_bind_removable(modname, SWITCH_EVENT_RELOADXML, NULL, on_reloadxml, NULL, &globals.reloadxml_node) != SWITCH_STATUS_SUCCESS ||
		switch_event_bind_removable(modname, SWITCH_EVENT_CUSTOM, SUBCLASS, on_custom, NULL, &globals.custom_node) != SWITCH_STATUS_SUCCESS ||
		switch_event_bind_removable(modname, SWITCH_EVENT_CHANNEL_HANGUP_COMPLETE, NULL, on_hangup, NULL, &globals.hangup_node) != SWITCH_STATUS_SUCCESS) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "Couldn't bind!\n");
		return SWITCH_STATUS_GENERR;
	}
	read_config();

	SWITCH_ADD_APP(app_interface, "selftest_app", "shim self-test", "shim self-test", selftest_app_function, "[data]", SAF_SUPPORT_NOMEDIA);
	SWITCH_ADD_APP(app_interface, "selftest_sleep", "sleep", "sleep", selftest_sleep_function, "<ms>", SAF_NONE);
	SWITCH_ADD_API(api_interface, "selftest", "shim self-test", selftest_api_function, "[sleep <ms>|fail|leak|config]");
	return SWITCH_STATUS_SUCCESS;
}

SWITCH_MODULE_SHUTDOWN_FUNCTION(mod_shim_selftest_shutdown)
{
	if (!globals.leak) {
		switch_event_unbind(&globals.reloadxml_node);
	}
	switch_event_unbind(&globals.custom_node);
	switch_event_unbind(&globals.hangup_node);
	switch_event_free_subclass(SUBCLASS);
	return SWITCH_STATUS_SUCCESS;
}
