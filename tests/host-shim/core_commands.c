/*
 * The FreeSWITCH API as a module calls it (switch_api_execute), and the core's call-control
 * commands (originate, uuid_hold, uuid_audio, uuid_transfer, uuid_kill, uuid_broadcast,
 * uuid_setvar, uuid_recv_dtmf, uuid_bridge, uuid_dump, uuid_getvar) as far
 * as a host without media can carry them out. Included by host_shim.c (it uses the shim's
 * sessions and events); see README.md "Call control".
 *
 * Every switch_api_execute fires an API event (API-Command, API-Command-Argument), as the core
 * does, plus the shim's own API-Reply header: tests read the commands the module ran and what
 * "FreeSWITCH" answered from those events.
 */

/* SWITCH_STANDARD_STREAM's writers, exported as the core exports them. */
SWITCH_DECLARE_NONSTD(switch_status_t) switch_console_stream_raw_write(switch_stream_handle_t *handle, uint8_t *data, switch_size_t datalen)
{
	return stream_raw_write(handle, data, datalen);
}

SWITCH_DECLARE_NONSTD(switch_status_t) switch_console_stream_write(switch_stream_handle_t *handle, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;
	switch_status_t st;
	if (!fmt) {
		return SWITCH_STATUS_FALSE;
	}
	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		return SWITCH_STATUS_MEMERR;
	}
	st = stream_raw_write(handle, (uint8_t *) s, (switch_size_t) n);
	free(s);
	return st;
}

static unsigned long g_job_serial;

/* Fire a channel event with the channel's data (and extra headers, NULL-terminated pairs). */
static void fire_channel_event(switch_core_session_t *s, switch_event_types_t id, ...)
{
	switch_event_t *e;
	va_list ap;
	const char *name, *value;
	if (SHIM_EVENT_CREATE(&e, id) != SWITCH_STATUS_SUCCESS) {
		return;
	}
	channel_event_set_data(s->channel, e);
	va_start(ap, id);
	while ((name = va_arg(ap, const char *))) {
		value = va_arg(ap, const char *);
		switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, name, value);
	}
	va_end(ap);
	SHIM_FIRE(&e);
}

/* `originate {a=b,c='d e'}endpoint exten [XML] [context] ...`: a new outbound session named after
 * the endpoint, its variables from the braces, ringing (CHANNEL_PROGRESS). Answering it is the
 * test's part (`answer <uuid>`), as a person picking up the phone. */
static void sim_originate(const char *arg, switch_stream_handle_t *stream)
{
	char *copy = xstrdup(arg), *p = copy, *vars = NULL, *endpoint, *exten, *context = NULL, *uuid = NULL;
	switch_core_session_t *s, *x;
	char generated[64];

	if (*p == '{') {
		char *close = strchr(p, '}');
		if (!close) {
			stream->write_function(stream, "-ERR Invalid variable block\n");
			free(copy);
			return;
		}
		*close = '\0';
		vars = p + 1;
		p = close + 1;
	}
	endpoint = strsep(&p, " ");
	exten = p ? strsep(&p, " ") : NULL;
	if (p) {
		(void) strsep(&p, " "); /* dialplan */
		context = p ? strsep(&p, " ") : NULL;
	}
	if (zstr(endpoint) || zstr(exten)) {
		stream->write_function(stream, "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>]\n");
		free(copy);
		return;
	}
	/* origination_uuid first: it names the session */
	if (vars) {
		char *v = strstr(vars, "origination_uuid=");
		if (v) {
			uuid = xstrdup(v + strlen("origination_uuid="));
			uuid[strcspn(uuid, ",")] = '\0';
		}
	}
	if (!uuid) {
		snprintf(generated, sizeof(generated), "shim-originate-%lu", ++g_job_serial);
		uuid = xstrdup(generated);
	}
	if ((x = session_get(uuid))) {
		session_put(x);
		stream->write_function(stream, "-ERR DESTINATION_OUT_OF_ORDER\n");
		free(uuid);
		free(copy);
		return;
	}
	s = session_create(uuid);
	s->channel->outbound = 1;
	switch_event_add_header_string(s->channel->variables, SWITCH_STACK_BOTTOM, "direction", "outbound");
	if (vars) {
		char *item, *rest = vars;
		while ((item = strsep(&rest, ","))) {
			char *eq = strchr(item, '=');
			size_t len;
			if (!eq || eq == item) {
				continue;
			}
			*eq++ = '\0';
			len = strlen(eq);
			if (len >= 2 && eq[0] == '\'' && eq[len - 1] == '\'') {
				eq[len - 1] = '\0';
				eq++;
			}
			if (!strcmp(item, "origination_caller_id_number")) {
				s->channel->profile[PF_CALLER_ID_NUMBER] = xstrdup(eq);
			}
			switch_event_add_header_string(s->channel->variables, SWITCH_STACK_BOTTOM, item, eq);
		}
	}
	s->channel->profile[PF_DESTINATION_NUMBER] = xstrdup(exten);
	if (context) {
		free(s->channel->profile[PF_CONTEXT]);
		s->channel->profile[PF_CONTEXT] = xstrdup(context);
	}
	s->channel->name = xstrdup(endpoint);
	s->channel->profile[PF_CHAN_NAME] = xstrdup(endpoint);
	pthread_mutex_lock(&g_sess_lock);
	s->next = g_sessions;
	g_sessions = s;
	pthread_mutex_unlock(&g_sess_lock);
	fire_channel_event(s, SWITCH_EVENT_CHANNEL_PROGRESS, NULL);
	stream->write_function(stream, "+OK %s\n", uuid);
	free(uuid);
	free(copy);
}

static int cmd_bridge(const char *a, const char *b, const char **err);

/* The uuid_* commands: the named channel must exist; what they do to media is not simulated,
 * the channel events they cause are. */
static void sim_uuid_command(const char *cmd, const char *arg, switch_stream_handle_t *stream)
{
	char *copy = xstrdup(arg), *p = copy, *first, *uuid;
	switch_core_session_t *s;
	int off = 0;

	first = strsep(&p, " ");
	if (!strcmp(cmd, "uuid_hold") && first && (!strcmp(first, "off") || !strcmp(first, "toggle"))) {
		off = !strcmp(first, "off");
		uuid = p ? strsep(&p, " ") : NULL;
	} else {
		uuid = first;
	}
	if (zstr(uuid)) {
		stream->write_function(stream, "-USAGE: %s <uuid> ...\n", cmd);
		free(copy);
		return;
	}
	if (!(s = session_get(uuid))) {
		stream->write_function(stream, "-ERR No such channel!\n");
		free(copy);
		return;
	}
	if (!strcmp(cmd, "uuid_kill")) {
		const char *err = NULL;
		session_put(s);
		if (cmd_hangup(uuid, (p && *p) ? p : "NORMAL_CLEARING", &err)) {
			stream->write_function(stream, "+OK\n");
		} else {
			stream->write_function(stream, "-ERR %s\n", err);
		}
		free(copy);
		return;
	}
	if (!strcmp(cmd, "uuid_hold")) {
		fire_channel_event(s, off ? SWITCH_EVENT_CHANNEL_UNHOLD : SWITCH_EVENT_CHANNEL_HOLD, NULL);
		stream->write_function(stream, "+OK Success\n");
	} else if (!strcmp(cmd, "uuid_audio")) {
		if (!p || (strncmp(p, "start ", 6) && strcmp(p, "stop"))) {
			stream->write_function(stream, "-USAGE: <uuid> [start [read|write] [mute|level <level>]|stop]\n");
		} else {
			stream->write_function(stream, "+OK Success\n");
		}
	} else if (!strcmp(cmd, "uuid_transfer")) {
		stream->write_function(stream, p && *p ? "+OK\n" : "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n");
	} else if (!strcmp(cmd, "uuid_broadcast")) {
		char *path = p ? strsep(&p, " ") : NULL, *data = path ? strstr(path, "::") : NULL;
		if (zstr(path)) {
			stream->write_function(stream, "-USAGE: <uuid> <path> [aleg|bleg|both]\n");
		} else {
			if (data) {
				/* `app::data` runs at once here (no bridge to wait for), setting what the core's
				 * switch_core_session_exec sets when it runs it */
				*data = '\0';
				switch_channel_set_variable_var_check(s->channel, SWITCH_CURRENT_APPLICATION_VARIABLE, path, SWITCH_FALSE);
				switch_channel_set_variable_var_check(s->channel, SWITCH_CURRENT_APPLICATION_DATA_VARIABLE, data + 2, SWITCH_FALSE);
			}
			stream->write_function(stream, "+OK Message queued\n");
		}
	} else if (!strcmp(cmd, "uuid_getvar")) {
		char *name = p ? strsep(&p, " ") : NULL;
		const char *value = zstr(name) ? NULL : switch_channel_get_variable_dup(s->channel, name, SWITCH_FALSE, -1);
		if (zstr(name)) {
			stream->write_function(stream, "-USAGE: <uuid> <var>\n");
		} else {
			stream->write_function(stream, "%s", value ? value : "_undef_");
		}
	} else if (!strcmp(cmd, "uuid_setvar")) {
		char *name = p ? strsep(&p, " ") : NULL;
		if (zstr(name)) {
			stream->write_function(stream, "-USAGE: <uuid> <var> [value]\n");
		} else {
			/* set, or unset without a value, as the core does; what the variable then does (a
			 * cancel key) is the core's, and the tests read the command */
			switch_channel_set_variable_var_check(s->channel, name, (p && *p) ? p : NULL, SWITCH_FALSE);
			stream->write_function(stream, "+OK\n");
		}
	} else if (!strcmp(cmd, "uuid_dump")) {
		/* the shim's legs are bridged as peers (no originator waits): the state says so */
		stream->write_function(stream, "Unique-ID: %s\nChannel-State: CS_EXCHANGE_MEDIA\n", uuid);
	} else if (!strcmp(cmd, "uuid_recv_dtmf")) {
		stream->write_function(stream, p && *p ? "+OK\n" : "-USAGE: <uuid> <dtmf_data>\n");
	} else if (!strcmp(cmd, "uuid_bridge")) {
		/* both legs must exist; the bridge is reported as the core reports it */
		const char *err = NULL;
		if (!p || !*p) {
			stream->write_function(stream, "-USAGE: <uuid> <other_uuid>\n");
		} else if (cmd_bridge(uuid, p, &err)) {
			stream->write_function(stream, "+OK\n");
		} else {
			stream->write_function(stream, "-ERR Invalid uuid\n");
		}
	}
	session_put(s);
	free(copy);
}

SWITCH_DECLARE(switch_status_t) switch_api_execute(const char *cmd, const char *arg, switch_core_session_t *session, switch_stream_handle_t *stream)
{
	switch_api_interface_t *api;
	switch_status_t st = SWITCH_STATUS_SUCCESS;
	switch_event_t *event = NULL;
	switch_size_t before = stream ? stream->data_len : 0;
	const char *a = arg ? arg : "";

	if (!stream || !stream->write_function || zstr(cmd)) {
		return SWITCH_STATUS_FALSE;
	}
	if (!strcmp(cmd, "bgapi")) {
		/* the core runs the command on a thread and answers at once; here it runs first */
		char *inner = xstrdup(a), *space = strchr(inner, ' ');
		switch_stream_handle_t job = { 0 };
		job.data = xcalloc(1024);
		job.end = job.data;
		job.data_size = job.alloc_len = job.alloc_chunk = 1024;
		job.write_function = switch_console_stream_write;
		job.raw_write_function = switch_console_stream_raw_write;
		if (space) {
			*space = '\0';
		}
		switch_api_execute(inner, space ? space + 1 : "", NULL, &job);
		free(job.data);
		free(inner);
		stream->write_function(stream, "+OK Job-UUID: shim-job-%lu\n", ++g_job_serial);
	} else if ((api = iface_get(1, cmd))) {
		st = api->function ? api->function(a, session, stream) : SWITCH_STATUS_FALSE;
		iface_unprotect(1, api);
	} else if (!strcmp(cmd, "originate")) {
		sim_originate(a, stream);
	} else if (!strcmp(cmd, "uuid_hold") || !strcmp(cmd, "uuid_audio") || !strcmp(cmd, "uuid_transfer") ||
			   !strcmp(cmd, "uuid_kill") || !strcmp(cmd, "uuid_broadcast") || !strcmp(cmd, "uuid_setvar") ||
			   !strcmp(cmd, "uuid_recv_dtmf") || !strcmp(cmd, "uuid_bridge") || !strcmp(cmd, "uuid_dump") ||
			   !strcmp(cmd, "uuid_getvar")) {
		sim_uuid_command(cmd, a, stream);
	} else {
		st = SWITCH_STATUS_FALSE;
		stream->write_function(stream, "-ERR %s Command not found!\n", cmd);
	}
	if (SHIM_EVENT_CREATE(&event, SWITCH_EVENT_API) == SWITCH_STATUS_SUCCESS) {
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "API-Command", cmd);
		switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "API-Command-Argument", a);
		if (stream->data && stream->data_len >= before) {
			switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, "API-Reply", (char *) stream->data + before);
		}
		SHIM_FIRE(&event);
	}
	return st;
}

/* `ring <uuid>`: the far end of the call rings (CHANNEL_PROGRESS on it), as the core reports on
 * the caller's leg when the leg it bridges to (an agent's phone) starts ringing. */
static int cmd_ring(const char *uuid, const char **err)
{
	switch_core_session_t *s = session_get(uuid);
	if (!s) {
		*err = "no such session";
		return 0;
	}
	fire_channel_event(s, SWITCH_EVENT_CHANNEL_PROGRESS, NULL);
	session_put(s);
	return 1;
}

/* `bridge <a> <b>`: the two legs are connected (CHANNEL_BRIDGE on a, naming b), as the core
 * reports a bridge. */
static int cmd_bridge(const char *a, const char *b, const char **err)
{
	switch_core_session_t *sa = session_get(a), *sb = session_get(b);
	if (!sa || !sb) {
		*err = "no such session";
	} else {
		fire_channel_event(sa, SWITCH_EVENT_CHANNEL_BRIDGE, "Bridge-A-Unique-ID", a, "Bridge-B-Unique-ID", b,
						   "Other-Leg-Unique-ID", b, NULL);
	}
	if (sa) {
		session_put(sa);
	}
	if (sb) {
		session_put(sb);
	}
	return *err == NULL;
}
