/*
 * host-shim: a small stand-in for the FreeSWITCH 1.10 core, for testing a module's .so without
 * FreeSWITCH. It implements the core functions mod_natterbox_sf imports, loads the module the way
 * switch_loadable_module.c does, simulates sessions and channels, and runs the event system with
 * one dispatcher thread. It is driven by line commands; see README.md for the protocol.
 *
 * Behaviour follows FreeSWITCH 1.10.12's core (switch_loadable_module.c, switch_log.c,
 * switch_channel.c, switch_event.c, switch_xml.c, switch_core_session.c); where it differs on
 * purpose, the comment says so.
 *
 * Built with -rdynamic so the module's undefined switch_* symbols resolve against this program.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <switch.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* Small utilities                                                                             */
/* ------------------------------------------------------------------------------------------ */

static void *xcalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (!p) {
		fprintf(stderr, "host-shim: out of memory\n");
		abort();
	}
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");
	if (!p) {
		abort();
	}
	return p;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		abort();
	}
	va_end(ap);
	return s;
}

static int64_t now_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}

/* A growing byte buffer, always NUL-terminated. */
typedef struct {
	char *data;
	size_t len;
	size_t cap;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (b->len + n + 1 > cap) {
			cap *= 2;
		}
		b->data = realloc(b->data, cap);
		if (!b->data) {
			abort();
		}
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void sb_puts(sbuf_t *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;
	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		abort();
	}
	sb_add(b, s, (size_t) n);
	free(s);
}

/* Protocol escaping: printable ASCII except backslash passes; everything else is \\ or \xNN. */
static void sb_escaped(sbuf_t *b, const char *s)
{
	const unsigned char *p;
	char tmp[8];
	if (!s) {
		sb_puts(b, "(null)");
		return;
	}
	for (p = (const unsigned char *) s; *p; p++) {
		if (*p == '\\') {
			sb_add(b, "\\\\", 2);
		} else if (*p >= 0x20 && *p < 0x7f) {
			sb_add(b, (const char *) p, 1);
		} else {
			snprintf(tmp, sizeof(tmp), "\\x%02X", *p);
			sb_add(b, tmp, 4);
		}
	}
}

/* All protocol output on stdout goes through one lock, one block at a time. */
static pthread_mutex_t g_out_lock = PTHREAD_MUTEX_INITIALIZER;

static void out_block(const char *s)
{
	pthread_mutex_lock(&g_out_lock);
	fputs(s, stdout);
	fflush(stdout);
	pthread_mutex_unlock(&g_out_lock);
}

static const char *status_name(switch_status_t st)
{
	static const char *names[] = {
		"SUCCESS", "FALSE", "TIMEOUT", "RESTART", "INTR", "NOTIMPL", "MEMERR", "NOOP", "RESAMPLE", "GENERR",
		"INUSE", "BREAK", "SOCKERR", "MORE_DATA", "NOTFOUND", "UNLOAD", "NOUNLOAD", "IGNORE", "TOO_SMALL",
		"FOUND", "CONTINUE", "TERM", "NOT_INITALIZED", "TOO_LATE"
	};
	static __thread char other[32];
	if ((unsigned) st < sizeof(names) / sizeof(names[0])) {
		return names[st];
	}
	snprintf(other, sizeof(other), "STATUS_%d", (int) st);
	return other;
}

/* ------------------------------------------------------------------------------------------ */
/* Memory pools, locks (the opaque APR types of the headers, defined here)                     */
/* ------------------------------------------------------------------------------------------ */

typedef union {
	long double ld;
	long long ll;
	void *p;
	void (*fp)(void);
} pool_align_t;

struct pool_chunk {
	struct pool_chunk *next;
	pool_align_t data[]; /* aligned for any type, like apr_palloc */
};

struct fspr_pool_t {
	pthread_mutex_t lock;
	struct pool_chunk *chunks;
};

struct fspr_thread_rwlock_t {
	pthread_rwlock_t rw;
};

struct fspr_thread_mutex_t {
	pthread_mutex_t m;
};

static switch_memory_pool_t *pool_create(void)
{
	switch_memory_pool_t *p = xcalloc(sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	return p;
}

static void *pool_alloc(switch_memory_pool_t *p, size_t n)
{
	struct pool_chunk *c = xcalloc(sizeof(*c) + n);
	pthread_mutex_lock(&p->lock);
	c->next = p->chunks;
	p->chunks = c;
	pthread_mutex_unlock(&p->lock);
	return c->data;
}

static char *pool_strdup(switch_memory_pool_t *p, const char *s)
{
	size_t n = strlen(s);
	char *d = pool_alloc(p, n + 1);
	memcpy(d, s, n + 1);
	return d;
}

static void pool_destroy(switch_memory_pool_t *p)
{
	struct pool_chunk *c, *n;
	if (!p) {
		return;
	}
	for (c = p->chunks; c; c = n) {
		n = c->next;
		free(c);
	}
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static switch_thread_rwlock_t *pool_rwlock(switch_memory_pool_t *p)
{
	switch_thread_rwlock_t *l = pool_alloc(p, sizeof(*l));
	pthread_rwlock_init(&l->rw, NULL);
	return l;
}

static switch_mutex_t *pool_mutex(switch_memory_pool_t *p)
{
	pthread_mutexattr_t a;
	switch_mutex_t *m = pool_alloc(p, sizeof(*m));
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE); /* SWITCH_MUTEX_NESTED */
	pthread_mutex_init(&m->m, &a);
	pthread_mutexattr_destroy(&a);
	return m;
}

/* switch_thread_rwlock_trywrlock_timeout(): poll, like the core, for up to `seconds`. */
static int rwlock_trywrlock_timeout(switch_thread_rwlock_t *l, int seconds)
{
	int64_t deadline = now_us() + (int64_t) seconds * 1000000;
	for (;;) {
		if (pthread_rwlock_trywrlock(&l->rw) == 0) {
			return 1;
		}
		if (now_us() >= deadline) {
			return 0;
		}
		usleep(10000);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Logging                                                                                     */
/* ------------------------------------------------------------------------------------------ */

#define LOG_BUCKETS 10 /* 0..7 by level, 8 = DEBUG1..10, 9 = invalid level */
static const char *LOG_BUCKET_NAMES[LOG_BUCKETS] = {
	"CONSOLE", "ALERT", "CRIT", "ERR", "WARNING", "NOTICE", "INFO", "DEBUG", "DEBUGX", "INVALID"
};
static unsigned long g_log_counts[LOG_BUCKETS];
static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_log_stdout;      /* --log-stdout: mirror each log line on stdout as "@log ..." */
static int g_debug_level;     /* --debug-level N: print SWITCH_LOG_DEBUG1..N (the core drops them by default) */

static const char *cut_path(const char *file)
{
	const char *p, *r = file;
	if (!file) {
		return "";
	}
	for (p = file; *p; p++) {
		if (*p == '/' || *p == '\\') {
			r = p + 1;
		}
	}
	return r;
}

SWITCH_DECLARE(void) switch_log_printf(switch_text_channel_t channel, const char *file, const char *func, int line,
									   const char *userdata, switch_log_level_t level, const char *fmt, ...)
{
	va_list ap;
	char *msg = NULL;
	const char *uuid = NULL;
	const char *lname;
	char lbuf[24];
	int bucket, print = 1;
	int lv = (int) level;

	if (lv > 100) {
		/* DEBUG1..DEBUG10: shown only when the debug level allows (fsctl debug_level) */
		bucket = 8;
		snprintf(lbuf, sizeof(lbuf), "DEBUG%d", lv - 100);
		lname = lbuf;
		print = (lv - 100) <= g_debug_level;
	} else if (lv >= 0 && lv <= 7) {
		bucket = lv;
		lname = LOG_BUCKET_NAMES[lv];
	} else {
		bucket = 9;
		snprintf(lbuf, sizeof(lbuf), "LEVEL%d", lv);
		lname = lbuf;
	}

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt ? fmt : "", ap) < 0) {
		msg = NULL;
	}
	va_end(ap);

	if (channel == SWITCH_CHANNEL_ID_SESSION && userdata) {
		uuid = switch_core_session_get_uuid((switch_core_session_t *) userdata);
	} else if (!zstr(userdata)) {
		uuid = userdata; /* SWITCH_CHANNEL_UUID_LOG / SESSION_LOG_CLEAN carry the uuid string */
	}

	pthread_mutex_lock(&g_log_lock);
	g_log_counts[bucket]++;
	if (print) {
		/* The core adds no newline: print what the caller gave, in one write. */
		char *line_txt = xasprintf("[%s] %s:%d %s() %s%s%s%s", lname, cut_path(file), line, func ? func : "",
								   uuid ? "[" : "", uuid ? uuid : "", uuid ? "] " : "", msg ? msg : "");
		fputs(line_txt, stderr);
		fflush(stderr);
		free(line_txt);
	}
	pthread_mutex_unlock(&g_log_lock);

	if (print && g_log_stdout) {
		sbuf_t b = { 0 };
		sb_printf(&b, "@log %s %s:%d %s() %s ", lname, cut_path(file), line, func ? func : "", uuid ? uuid : "-");
		sb_escaped(&b, msg ? msg : "");
		sb_puts(&b, "\n");
		out_block(b.data);
		free(b.data);
	}
	free(msg);
}

/* fsctl: only the log level is asked for (the module skips formatting lines the core would drop).
 * The shim prints every level, so it answers DEBUG and ignores a new level. */
SWITCH_DECLARE(int32_t) switch_core_session_ctl(switch_session_ctl_t cmd, void *val)
{
	int *intval = (int *) val;
	if (cmd != SCSC_LOGLEVEL || !intval) {
		return -1;
	}
	*intval = SWITCH_LOG_DEBUG;
	return 0;
}

/* Internal logging goes through the same function, so it is counted like the core's own lines. */
#define SHIM_LOG(level, ...) switch_log_printf(SWITCH_CHANNEL_LOG, level, __VA_ARGS__)

/* ------------------------------------------------------------------------------------------ */
/* Events                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static const char *EVENT_NAMES[SWITCH_EVENT_ALL + 1] = {
	"CUSTOM", "CLONE", "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE",
	"CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE",
	"CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE",
	"CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_OUTGOING", "CHANNEL_PARK", "CHANNEL_UNPARK",
	"CHANNEL_APPLICATION", "CHANNEL_ORIGINATE", "CHANNEL_UUID", "API", "LOG", "INBOUND_CHAN",
	"OUTBOUND_CHAN", "STARTUP", "SHUTDOWN", "PUBLISH", "UNPUBLISH", "TALK", "NOTALK", "SESSION_CRASH",
	"MODULE_LOAD", "MODULE_UNLOAD", "DTMF", "MESSAGE", "PRESENCE_IN", "NOTIFY_IN", "PRESENCE_OUT",
	"PRESENCE_PROBE", "MESSAGE_WAITING", "MESSAGE_QUERY", "ROSTER", "CODEC", "BACKGROUND_JOB",
	"DETECTED_SPEECH", "DETECTED_TONE", "PRIVATE_COMMAND", "HEARTBEAT", "TRAP", "ADD_SCHEDULE",
	"DEL_SCHEDULE", "EXE_SCHEDULE", "RE_SCHEDULE", "RELOADXML", "NOTIFY", "PHONE_FEATURE",
	"PHONE_FEATURE_SUBSCRIBE", "SEND_MESSAGE", "RECV_MESSAGE", "REQUEST_PARAMS", "CHANNEL_DATA", "GENERAL",
	"COMMAND", "SESSION_HEARTBEAT", "CLIENT_DISCONNECTED", "SERVER_DISCONNECTED", "SEND_INFO", "RECV_INFO",
	"RECV_RTCP_MESSAGE", "SEND_RTCP_MESSAGE", "CALL_SECURE", "NAT", "RECORD_START", "RECORD_STOP",
	"PLAYBACK_START", "PLAYBACK_STOP", "CALL_UPDATE", "FAILURE", "SOCKET_DATA", "MEDIA_BUG_START",
	"MEDIA_BUG_STOP", "CONFERENCE_DATA_QUERY", "CONFERENCE_DATA", "CALL_SETUP_REQ", "CALL_SETUP_RESULT",
	"CALL_DETAIL", "DEVICE_STATE", "TEXT", "SHUTDOWN_REQUESTED", "ALL"
};

static const char *event_name(switch_event_types_t id)
{
	if ((int) id >= 0 && id <= SWITCH_EVENT_ALL && EVENT_NAMES[id]) {
		return EVENT_NAMES[id];
	}
	return "INVALID";
}

static int event_id_by_name(const char *name, switch_event_types_t *out)
{
	int i;
	if (!strncasecmp(name, "SWITCH_EVENT_", 13)) {
		name += 13;
	}
	for (i = 0; i <= SWITCH_EVENT_ALL; i++) {
		if (EVENT_NAMES[i] && !strcasecmp(name, EVENT_NAMES[i])) {
			*out = (switch_event_types_t) i;
			return 1;
		}
	}
	return 0;
}

/* Bindings and subclass reservations (struct switch_event_node is opaque in the headers). */
struct switch_event_node {
	char *id;
	switch_event_types_t event_id;
	char *subclass_name;
	switch_event_callback_t callback;
	void *user_data;
	struct switch_event_node *next;
	/* shim bookkeeping */
	unsigned long serial;
	int dangling; /* its module was unloaded with the binding still in place */
};

typedef struct subclass_res {
	char *owner;
	char *name;
	int bind; /* reserved by a listener (bind) rather than by its owner */
	unsigned long serial;
	struct subclass_res *next;
} subclass_res_t;

static pthread_rwlock_t g_bind_rw = PTHREAD_RWLOCK_INITIALIZER;  /* the core's RWLOCK */
static switch_event_node_t *g_nodes[SWITCH_EVENT_ALL + 1];
static pthread_mutex_t g_subclass_lock = PTHREAD_MUTEX_INITIALIZER;
static subclass_res_t *g_subclasses;
static unsigned long g_serial;   /* creation order of bindings, reservations, modules */
static pthread_mutex_t g_serial_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_event_seq;
static char g_core_uuid[64];
static char g_hostname[256];

static unsigned long next_serial(void)
{
	unsigned long s;
	pthread_mutex_lock(&g_serial_lock);
	s = ++g_serial;
	pthread_mutex_unlock(&g_serial_lock);
	return s;
}

static unsigned long ci_hash(const char *s)
{
	unsigned long h = 0;
	for (; *s; s++) {
		h = h * 33 + (unsigned long) (unsigned char) (*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
	}
	return h;
}

static switch_event_header_t *header_find(switch_event_t *e, const char *name)
{
	switch_event_header_t *hp;
	unsigned long h;
	if (!e || !name) {
		return NULL;
	}
	h = ci_hash(name);
	for (hp = e->headers; hp; hp = hp->next) {
		if (hp->hash == h && !strcasecmp(hp->name, name)) {
			return hp;
		}
	}
	return NULL;
}

static void header_free(switch_event_header_t *hp)
{
	int i;
	free(hp->name);
	if (hp->idx) {
		for (i = 0; i < hp->idx; i++) {
			free(hp->array[i]);
		}
		free(hp->array);
	}
	free(hp->value);
	free(hp);
}

static void header_delete(switch_event_t *e, const char *name)
{
	switch_event_header_t *hp, *prev = NULL, *next;
	unsigned long h = ci_hash(name);
	for (hp = e->headers; hp; hp = next) {
		next = hp->next;
		if (hp->hash == h && !strcasecmp(hp->name, name)) {
			if (prev) {
				prev->next = next;
			} else {
				e->headers = next;
			}
			if (e->last_header == hp) {
				e->last_header = prev;
			}
			header_free(hp);
		} else {
			prev = hp;
		}
	}
}

static void header_redraw(switch_event_header_t *hp)
{
	/* value of an array header: "ARRAY::a|:b|:c" (a single element is shown bare) */
	sbuf_t b = { 0 };
	int j;
	if (hp->idx > 1) {
		sb_puts(&b, "ARRAY::");
	}
	for (j = 0; j < hp->idx; j++) {
		if (j) {
			sb_puts(&b, "|:");
		}
		sb_puts(&b, hp->array[j] ? hp->array[j] : "");
	}
	free(hp->value);
	hp->value = b.data ? b.data : xstrdup("");
}

static void header_append(switch_event_t *e, switch_event_header_t *hp, switch_stack_t stack)
{
	if (stack & SWITCH_STACK_TOP) {
		hp->next = e->headers;
		e->headers = hp;
		if (!e->last_header) {
			e->last_header = hp;
		}
	} else {
		hp->next = NULL;
		if (e->last_header) {
			e->last_header->next = hp;
		} else {
			e->headers = hp;
		}
		e->last_header = hp;
	}
}

static switch_status_t event_add_header_owned(switch_event_t *e, switch_stack_t stack, const char *name, char *data);

static void event_add_array(switch_event_t *e, const char *name, const char *val)
{
	/* "ARRAY::a|:b" becomes a header with the elements pushed in order */
	char *copy = xstrdup(val + 7), *p = copy, *sep;
	for (;;) {
		sep = strstr(p, "|:");
		if (sep) {
			*sep = '\0';
		}
		event_add_header_owned(e, SWITCH_STACK_PUSH, name, xstrdup(p));
		if (!sep) {
			break;
		}
		p = sep + 2;
	}
	free(copy);
}

static switch_status_t event_add_header_owned(switch_event_t *e, switch_stack_t stack, const char *name, char *data)
{
	switch_event_header_t *hp = NULL;

	if (!strcmp(name, "_body")) {
		free(e->body);
		e->body = xstrdup(data);
	}

	if (stack & (SWITCH_STACK_PUSH | SWITCH_STACK_UNSHIFT)) {
		hp = header_find(e, name);
	}

	if (!hp) {
		if (zstr(data)) {
			header_delete(e, name);
			free(data);
			return SWITCH_STATUS_SUCCESS;
		}
		if (e->flags & EF_UNIQ_HEADERS) {
			header_delete(e, name);
		}
		if (!strncmp(data, "ARRAY::", 7)) {
			event_add_array(e, name, data);
			free(data);
			return SWITCH_STATUS_SUCCESS;
		}
		hp = xcalloc(sizeof(*hp));
		hp->name = xstrdup(name);
		hp->hash = ci_hash(name);
		if (stack & (SWITCH_STACK_PUSH | SWITCH_STACK_UNSHIFT)) {
			hp->array = xcalloc(sizeof(char *));
			hp->array[0] = data;
			hp->idx = 1;
			header_redraw(hp);
		} else {
			hp->value = data;
		}
		header_append(e, hp, stack);
		return SWITCH_STATUS_SUCCESS;
	}

	/* PUSH / UNSHIFT onto an existing header */
	if (!hp->idx) {
		hp->array = xcalloc(sizeof(char *));
		hp->array[0] = hp->value;
		hp->value = NULL;
		hp->idx = 1;
	}
	hp->array = realloc(hp->array, sizeof(char *) * (size_t) (hp->idx + 1));
	if (!hp->array) {
		abort();
	}
	if (stack & SWITCH_STACK_PUSH) {
		hp->array[hp->idx] = data;
	} else {
		memmove(hp->array + 1, hp->array, sizeof(char *) * (size_t) hp->idx);
		hp->array[0] = data;
	}
	hp->idx++;
	header_redraw(hp);
	return SWITCH_STATUS_SUCCESS;
}

SWITCH_DECLARE(switch_status_t) switch_event_add_header_string(switch_event_t *event, switch_stack_t stack, const char *header_name,
															   const char *data)
{
	if (!event || !header_name) {
		return SWITCH_STATUS_GENERR;
	}
	if (data) {
		return event_add_header_owned(event, stack, header_name, xstrdup(data));
	}
	return SWITCH_STATUS_GENERR;
}

static void event_add_headerf(switch_event_t *e, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void event_add_headerf(switch_event_t *e, const char *name, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		abort();
	}
	va_end(ap);
	event_add_header_owned(e, SWITCH_STACK_BOTTOM, name, s);
}

SWITCH_DECLARE(char *) switch_event_get_header_idx(switch_event_t *event, const char *header_name, int idx)
{
	switch_event_header_t *hp;
	if (!event || !header_name) {
		return NULL;
	}
	if ((hp = header_find(event, header_name))) {
		if (idx > -1) {
			return idx < hp->idx ? hp->array[idx] : NULL;
		}
		return hp->value;
	} else if (!strcmp(header_name, "_body")) {
		return event->body;
	}
	return NULL;
}

static void event_prep(switch_event_t *e, const char *file, const char *func, int line)
{
	uint64_t seq;
	int64_t ts = now_us();
	time_t t = (time_t) (ts / 1000000);
	struct tm tm;
	char date[80];

	pthread_mutex_lock(&g_serial_lock);
	seq = ++g_event_seq;
	pthread_mutex_unlock(&g_serial_lock);

	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Event-Name", event_name(e->event_id));
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Core-UUID", g_core_uuid);
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "FreeSWITCH-Hostname", g_hostname);
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "FreeSWITCH-Switchname", g_hostname);
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "FreeSWITCH-IPv4", "127.0.0.1");
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "FreeSWITCH-IPv6", "::1");
	localtime_r(&t, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d %T", &tm);
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Event-Date-Local", date);
	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Event-Date-GMT", date);
	event_add_headerf(e, "Event-Date-Timestamp", "%lld", (long long) ts);
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Event-Calling-File", cut_path(file));
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Event-Calling-Function", func ? func : "");
	event_add_headerf(e, "Event-Calling-Line-Number", "%d", line);
	event_add_headerf(e, "Event-Sequence", "%llu", (unsigned long long) seq);
}

SWITCH_DECLARE(switch_status_t) switch_event_create_subclass_detailed(const char *file, const char *func, int line,
																	  switch_event_t **event, switch_event_types_t event_id,
																	  const char *subclass_name)
{
	*event = NULL;
	if ((event_id != SWITCH_EVENT_CLONE && event_id != SWITCH_EVENT_CUSTOM) && subclass_name) {
		return SWITCH_STATUS_GENERR;
	}
	if ((int) event_id < 0 || event_id > SWITCH_EVENT_ALL) {
		return SWITCH_STATUS_GENERR;
	}
	*event = xcalloc(sizeof(switch_event_t));
	if (event_id == SWITCH_EVENT_REQUEST_PARAMS || event_id == SWITCH_EVENT_CHANNEL_DATA || event_id == SWITCH_EVENT_MESSAGE) {
		(*event)->flags |= EF_UNIQ_HEADERS;
	}
	if (event_id != SWITCH_EVENT_CLONE) {
		(*event)->event_id = event_id;
		event_prep(*event, file, func, line);
	}
	if (subclass_name) {
		(*event)->subclass_name = xstrdup(subclass_name);
		switch_event_add_header_string(*event, SWITCH_STACK_BOTTOM, "Event-Subclass", subclass_name);
	}
	return SWITCH_STATUS_SUCCESS;
}

/* An event without the core's delivery headers (the core's switch_event_create_plain). */
static switch_event_t *event_create_plain(switch_event_types_t id)
{
	switch_event_t *e = xcalloc(sizeof(*e));
	e->event_id = id;
	if (id == SWITCH_EVENT_REQUEST_PARAMS || id == SWITCH_EVENT_CHANNEL_DATA || id == SWITCH_EVENT_MESSAGE) {
		e->flags |= EF_UNIQ_HEADERS;
	}
	return e;
}

SWITCH_DECLARE(void) switch_event_destroy(switch_event_t **event)
{
	switch_event_t *ep;
	switch_event_header_t *hp, *next;
	if (!event || !(ep = *event)) {
		return;
	}
	for (hp = ep->headers; hp; hp = next) {
		next = hp->next;
		header_free(hp);
	}
	free(ep->body);
	free(ep->subclass_name);
	free(ep);
	*event = NULL;
}

SWITCH_DECLARE(switch_status_t) switch_event_reserve_subclass_detailed(const char *owner, const char *subclass_name)
{
	subclass_res_t *r;
	switch_status_t st = SWITCH_STATUS_SUCCESS;

	if (!owner || !subclass_name) {
		return SWITCH_STATUS_GENERR;
	}
	pthread_mutex_lock(&g_subclass_lock);
	for (r = g_subclasses; r; r = r->next) {
		if (!strcmp(r->name, subclass_name)) {
			break;
		}
	}
	if (r) {
		if (r->bind) {
			/* a listener reserved it first; now its owner takes it over */
			r->bind = 0;
			free(r->owner);
			r->owner = xstrdup(owner);
			r->serial = next_serial();
		} else {
			st = SWITCH_STATUS_INUSE;
		}
	} else {
		r = xcalloc(sizeof(*r));
		r->owner = xstrdup(owner);
		r->name = xstrdup(subclass_name);
		r->serial = next_serial();
		r->next = g_subclasses;
		g_subclasses = r;
	}
	pthread_mutex_unlock(&g_subclass_lock);
	return st;
}

SWITCH_DECLARE(switch_status_t) switch_event_free_subclass_detailed(const char *owner, const char *subclass_name)
{
	subclass_res_t *r, *prev = NULL;
	switch_status_t st = SWITCH_STATUS_FALSE;

	if (!owner || !subclass_name) {
		return SWITCH_STATUS_FALSE;
	}
	pthread_mutex_lock(&g_subclass_lock);
	for (r = g_subclasses; r; prev = r, r = r->next) {
		if (!strcmp(r->name, subclass_name)) {
			break;
		}
	}
	if (r) {
		if (!strcmp(owner, r->owner)) {
			pthread_rwlock_wrlock(&g_bind_rw);
			SHIM_LOG(SWITCH_LOG_NOTICE, "Subclass reservation deleted for %s:%s\n", owner, subclass_name);
			if (prev) {
				prev->next = r->next;
			} else {
				g_subclasses = r->next;
			}
			free(r->owner);
			free(r->name);
			free(r);
			st = SWITCH_STATUS_SUCCESS;
			pthread_rwlock_unlock(&g_bind_rw);
		} else {
			SHIM_LOG(SWITCH_LOG_NOTICE, "Subclass reservation %s inuse by listeners, detaching..\n", subclass_name);
			r->bind = 1;
		}
	}
	pthread_mutex_unlock(&g_subclass_lock);
	return st;
}

SWITCH_DECLARE(switch_status_t) switch_event_bind_removable(const char *id, switch_event_types_t event, const char *subclass_name,
															switch_event_callback_t callback, void *user_data,
															switch_event_node_t **node)
{
	switch_event_node_t *n;

	if (node) {
		*node = NULL;
	}
	if (subclass_name) {
		subclass_res_t *r;
		int found = 0;
		pthread_mutex_lock(&g_subclass_lock);
		for (r = g_subclasses; r; r = r->next) {
			if (!strcmp(r->name, subclass_name)) {
				found = 1;
				break;
			}
		}
		if (!found) {
			/* reserved on behalf of the listener, so the real owner can still take it */
			r = xcalloc(sizeof(*r));
			r->owner = xstrdup(id ? id : "");
			r->name = xstrdup(subclass_name);
			r->bind = 1;
			r->serial = next_serial();
			r->next = g_subclasses;
			g_subclasses = r;
		}
		pthread_mutex_unlock(&g_subclass_lock);
	}
	if ((int) event < 0 || event > SWITCH_EVENT_ALL || !callback) {
		return SWITCH_STATUS_MEMERR;
	}
	n = xcalloc(sizeof(*n));
	n->id = xstrdup(id ? id : "");
	n->event_id = event;
	n->subclass_name = subclass_name ? xstrdup(subclass_name) : NULL;
	n->callback = callback;
	n->user_data = user_data;
	n->serial = next_serial();
	pthread_rwlock_wrlock(&g_bind_rw);
	n->next = g_nodes[event];
	g_nodes[event] = n;
	pthread_rwlock_unlock(&g_bind_rw);
	if (node) {
		*node = n;
	}
	return SWITCH_STATUS_SUCCESS;
}

SWITCH_DECLARE(switch_status_t) switch_event_unbind(switch_event_node_t **node)
{
	switch_event_node_t *n, *np, *lnp = NULL;
	switch_status_t st = SWITCH_STATUS_FALSE;

	if (!node || !(n = *node)) {
		return st;
	}
	pthread_rwlock_wrlock(&g_bind_rw);
	for (np = g_nodes[n->event_id]; np; np = np->next) {
		if (np == n) {
			if (lnp) {
				lnp->next = n->next;
			} else {
				g_nodes[n->event_id] = n->next;
			}
			SHIM_LOG(SWITCH_LOG_DEBUG, "Event Binding deleted for %s:%s\n", n->id, event_name(n->event_id));
			free(n->subclass_name);
			free(n->id);
			free(n);
			*node = NULL;
			st = SWITCH_STATUS_SUCCESS;
			break;
		}
		lnp = np;
	}
	pthread_rwlock_unlock(&g_bind_rw);
	return st;
}

static int events_match(switch_event_t *e, switch_event_node_t *n)
{
	int match = 0;
	if (n->event_id == SWITCH_EVENT_ALL) {
		match++;
		if (!n->subclass_name) {
			return match;
		}
	}
	if (match || e->event_id == n->event_id) {
		if (e->subclass_name && n->subclass_name) {
			const char *h;
			if (!strncasecmp(n->subclass_name, "file:", 5)) {
				if ((h = switch_event_get_header_idx(e, "file", -1))) {
					match = !strcmp(n->subclass_name + 5, h);
				}
			} else if (!strncasecmp(n->subclass_name, "func:", 5)) {
				if ((h = switch_event_get_header_idx(e, "function", -1))) {
					match = !strcmp(n->subclass_name + 5, h);
				}
			} else {
				match = !strcmp(e->subclass_name, n->subclass_name);
			}
		} else if (!n->subclass_name) {
			match = 1;
		} else {
			match = 0;
		}
	}
	return match;
}

/* The dispatcher: one thread, FIFO, so delivery order is the firing order. */
typedef struct queued_event {
	switch_event_t *event;
	struct queued_event *next;
} queued_event_t;

static pthread_mutex_t g_q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_q_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_q_idle = PTHREAD_COND_INITIALIZER;
static queued_event_t *g_q_head, *g_q_tail;
static int g_q_busy, g_q_stop;
static pthread_t g_dispatcher;
static unsigned long g_fired[SWITCH_EVENT_ALL + 1];
static unsigned long g_fired_total, g_delivered_calls;
static int g_event_headers = 1; /* --events-brief turns the header dump off */

static void format_event(switch_event_t *e, sbuf_t *out)
{
	sbuf_t b = { 0 };
	switch_event_header_t *hp;
	const char *seq = switch_event_get_header_idx(e, "Event-Sequence", -1);
	sb_printf(&b, "@event %s %s ", seq ? seq : "0", event_name(e->event_id));
	if (e->subclass_name) {
		sb_escaped(&b, e->subclass_name);
	} else {
		sb_puts(&b, "-");
	}
	sb_puts(&b, "\n");
	if (g_event_headers) {
		for (hp = e->headers; hp; hp = hp->next) {
			sb_puts(&b, "@header ");
			sb_escaped(&b, hp->name);
			sb_puts(&b, ": ");
			sb_escaped(&b, hp->value);
			sb_puts(&b, "\n");
		}
		if (e->body) {
			sb_puts(&b, "@body ");
			sb_escaped(&b, e->body);
			sb_puts(&b, "\n");
		}
	}
	sb_printf(&b, "@end %s\n", seq ? seq : "0");
	*out = b;
}

static void deliver(switch_event_t **ev)
{
	switch_event_types_t e;
	switch_event_node_t *n;
	unsigned long calls = 0;

	pthread_rwlock_rdlock(&g_bind_rw);
	for (e = (*ev)->event_id;; e = SWITCH_EVENT_ALL) {
		for (n = g_nodes[e]; n; n = n->next) {
			if (events_match(*ev, n)) {
				if (n->dangling) {
					/* The core would call into the unloaded module here and crash. */
					SHIM_LOG(SWITCH_LOG_CRIT, "Not delivering %s to binding '%s': its module was unloaded without unbinding\n",
							 event_name((*ev)->event_id), n->id);
					continue;
				}
				(*ev)->bind_user_data = n->user_data;
				n->callback(*ev);
				calls++;
			}
		}
		if (e == SWITCH_EVENT_ALL) {
			break;
		}
	}
	pthread_rwlock_unlock(&g_bind_rw);
	pthread_mutex_lock(&g_q_lock);
	g_delivered_calls += calls;
	pthread_mutex_unlock(&g_q_lock);
	switch_event_destroy(ev);
}

static void *dispatcher_main(void *arg)
{
	(void) arg;
	pthread_mutex_lock(&g_q_lock);
	for (;;) {
		queued_event_t *q;
		while (!g_q_head && !g_q_stop) {
			pthread_cond_wait(&g_q_cond, &g_q_lock);
		}
		if (!g_q_head) {
			break;
		}
		q = g_q_head;
		g_q_head = q->next;
		if (!g_q_head) {
			g_q_tail = NULL;
		}
		g_q_busy = 1;
		pthread_mutex_unlock(&g_q_lock);
		deliver(&q->event);
		free(q);
		pthread_mutex_lock(&g_q_lock);
		g_q_busy = 0;
		if (!g_q_head) {
			pthread_cond_broadcast(&g_q_idle);
		}
	}
	pthread_mutex_unlock(&g_q_lock);
	return NULL;
}

static void events_wait_idle(void)
{
	pthread_mutex_lock(&g_q_lock);
	while (g_q_head || g_q_busy) {
		pthread_cond_wait(&g_q_idle, &g_q_lock);
	}
	pthread_mutex_unlock(&g_q_lock);
}

SWITCH_DECLARE(switch_status_t) switch_event_fire_detailed(const char *file, const char *func, int line, switch_event_t **event,
														   void *user_data)
{
	queued_event_t *q;
	sbuf_t text = { 0 };
	(void) file;
	(void) func;
	(void) line;
	if (!event || !*event) {
		return SWITCH_STATUS_FALSE;
	}
	if (user_data) {
		(*event)->event_user_data = user_data;
	}
	q = xcalloc(sizeof(*q));
	q->event = *event;
	*event = NULL;
	/* Printed when fired (in firing order, next to the command that fired it); delivered later. */
	format_event(q->event, &text);
	pthread_mutex_lock(&g_q_lock);
	out_block(text.data);
	free(text.data);
	g_fired_total++;
	if ((int) q->event->event_id >= 0 && q->event->event_id <= SWITCH_EVENT_ALL) {
		g_fired[q->event->event_id]++;
	}
	if (g_q_tail) {
		g_q_tail->next = q;
	} else {
		g_q_head = q;
	}
	g_q_tail = q;
	pthread_cond_signal(&g_q_cond);
	pthread_mutex_unlock(&g_q_lock);
	return SWITCH_STATUS_SUCCESS;
}

#define SHIM_FIRE(ev) switch_event_fire_detailed(__FILE__, __func__, __LINE__, ev, NULL)
#define SHIM_EVENT_CREATE(ev, id) switch_event_create_subclass_detailed(__FILE__, __func__, __LINE__, ev, id, NULL)

/* ------------------------------------------------------------------------------------------ */
/* XML configuration registry                                                                  */
/* ------------------------------------------------------------------------------------------ */

/*
 * The core reads the whole registry (freeswitch.xml with autoload_configs/ *.xml included in the
 * "configuration" section) at startup and on reloadxml, and switch_xml_open_cfg() answers from
 * that snapshot. The shim does the same with <conf-dir>/autoload_configs/ *.xml in name order, and
 * keeps each file's text with comments removed. It does not run X-PRE-PROCESS directives.
 */
typedef struct xml_file {
	char *path;
	char *text;
	struct xml_file *next;
} xml_file_t;

static pthread_rwlock_t g_xml_rw = PTHREAD_RWLOCK_INITIALIZER;
static xml_file_t *g_xml_files;
static char *g_conf_dir;

typedef struct shim_xml {
	struct switch_xml x; /* first, so a switch_xml_t points at the whole thing */
	int is_root;
	char *text;
	struct shim_xml *child;
} shim_xml_t;

static char *strip_comments(const char *s)
{
	sbuf_t b = { 0 };
	const char *p = s;
	while (*p) {
		if (!strncmp(p, "<!--", 4)) {
			const char *e = strstr(p + 4, "-->");
			p = e ? e + 3 : p + strlen(p);
		} else if (!strncmp(p, "<![CDATA[", 9)) {
			const char *e = strstr(p + 9, "]]>");
			const char *end = e ? e + 3 : p + strlen(p);
			sb_add(&b, p, (size_t) (end - p));
			p = end;
		} else {
			sb_add(&b, p, 1);
			p++;
		}
	}
	return b.data ? b.data : xstrdup("");
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	sbuf_t b = { 0 };
	char buf[4096];
	size_t n;
	if (!f) {
		return NULL;
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		sb_add(&b, buf, n);
	}
	fclose(f);
	return b.data ? b.data : xstrdup("");
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static void xml_registry_load(void)
{
	char *dir;
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t count = 0, i;
	xml_file_t *list = NULL, **tail = &list, *old, *n;

	dir = xasprintf("%s/autoload_configs", g_conf_dir);
	if ((d = opendir(dir))) {
		while ((de = readdir(d))) {
			size_t l = strlen(de->d_name);
			if (l > 4 && !strcmp(de->d_name + l - 4, ".xml")) {
				names = realloc(names, sizeof(char *) * (count + 1));
				if (!names) {
					abort();
				}
				names[count++] = xstrdup(de->d_name);
			}
		}
		closedir(d);
	} else {
		SHIM_LOG(SWITCH_LOG_WARNING, "Cannot open config dir %s: %s\n", dir, strerror(errno));
	}
	if (count) {
		qsort(names, count, sizeof(char *), cmp_str);
	}
	for (i = 0; i < count; i++) {
		char *path = xasprintf("%s/%s", dir, names[i]);
		char *raw = read_file(path);
		if (raw) {
			n = xcalloc(sizeof(*n));
			n->path = path;
			n->text = strip_comments(raw);
			free(raw);
			*tail = n;
			tail = &n->next;
		} else {
			SHIM_LOG(SWITCH_LOG_ERROR, "Error[cannot read %s: %s]\n", path, strerror(errno));
			free(path);
		}
		free(names[i]);
	}
	free(names);
	free(dir);

	pthread_rwlock_wrlock(&g_xml_rw);
	old = g_xml_files;
	g_xml_files = list;
	pthread_rwlock_unlock(&g_xml_rw);
	while (old) {
		n = old->next;
		free(old->path);
		free(old->text);
		free(old);
		old = n;
	}
}

/* Find the end of the tag that starts at p ('<'), honouring quoted attribute values. */
static const char *tag_end(const char *p)
{
	char q = 0;
	for (p++; *p; p++) {
		if (q) {
			if (*p == q) {
				q = 0;
			}
		} else if (*p == '"' || *p == '\'') {
			q = *p;
		} else if (*p == '>') {
			return p;
		}
	}
	return NULL;
}

/* Value of attribute `name` in the start tag [p, end); malloc'ed, or NULL. */
static char *tag_attr(const char *p, const char *end, const char *name)
{
	size_t nl = strlen(name);
	const char *s = p + 1;
	while (s < end && *s != ' ' && *s != '\t' && *s != '\r' && *s != '\n' && *s != '/' && *s != '>') {
		s++; /* skip the element name */
	}
	while (s < end) {
		const char *an, *ae;
		char q;
		while (s < end && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n' || *s == '/')) {
			s++;
		}
		an = s;
		while (s < end && *s != '=' && *s != ' ' && *s != '\t' && *s != '\r' && *s != '\n' && *s != '>') {
			s++;
		}
		ae = s;
		while (s < end && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
			s++;
		}
		if (s >= end || *s != '=') {
			if (s == an) {
				s++;
			}
			continue;
		}
		s++;
		while (s < end && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
			s++;
		}
		if (s >= end || (*s != '"' && *s != '\'')) {
			return NULL;
		}
		q = *s++;
		{
			const char *vs = s;
			while (s < end && *s != q) {
				s++;
			}
			if ((size_t) (ae - an) == nl && !strncmp(an, name, nl)) {
				char *v = xcalloc((size_t) (s - vs) + 1);
				memcpy(v, vs, (size_t) (s - vs));
				return v;
			}
			s++;
		}
	}
	return NULL;
}

static int is_tag(const char *p, const char *name)
{
	size_t l = strlen(name);
	return *p == '<' && !strncmp(p + 1, name, l) &&
		   (p[l + 1] == ' ' || p[l + 1] == '\t' || p[l + 1] == '\r' || p[l + 1] == '\n' || p[l + 1] == '>' || p[l + 1] == '/');
}

/* Skip over a CDATA section or processing instruction starting at p, or return p. */
static const char *skip_special(const char *p)
{
	const char *e;
	if (!strncmp(p, "<![CDATA[", 9)) {
		e = strstr(p + 9, "]]>");
		return e ? e + 3 : p + strlen(p);
	}
	if (!strncmp(p, "<?", 2)) {
		e = strstr(p + 2, "?>");
		return e ? e + 2 : p + strlen(p);
	}
	return p;
}

/*
 * Find <configuration name="..."> in text; on success return 1 and the element's extent.
 * Returns -1 if the element is found but not closed (a parse error in the core).
 */
static int find_configuration(const char *text, const char *name, const char **start, const char **end)
{
	const char *p = text;
	while ((p = strchr(p, '<'))) {
		const char *sp = skip_special(p);
		const char *te;
		char *v;
		if (sp != p) {
			p = sp;
			continue;
		}
		if (!is_tag(p, "configuration")) {
			p++;
			continue;
		}
		if (!(te = tag_end(p))) {
			return -1;
		}
		v = tag_attr(p, te, "name");
		if (v && !strcmp(v, name)) {
			free(v);
			*start = p;
			if (te[-1] == '/') {
				*end = te + 1;
				return 1;
			}
			/* find the matching close tag, counting nested configuration elements */
			{
				int depth = 1;
				const char *q = te + 1;
				while ((q = strchr(q, '<'))) {
					const char *sq = skip_special(q);
					if (sq != q) {
						q = sq;
						continue;
					}
					if (!strncmp(q, "</configuration", 15)) {
						const char *ce = tag_end(q);
						if (!ce) {
							return -1;
						}
						if (--depth == 0) {
							*end = ce + 1;
							return 1;
						}
						q = ce + 1;
					} else if (is_tag(q, "configuration")) {
						const char *ce = tag_end(q);
						if (!ce) {
							return -1;
						}
						if (ce[-1] != '/') {
							depth++;
						}
						q = ce + 1;
					} else {
						q++;
					}
				}
				return -1;
			}
		}
		free(v);
		p = te + 1;
	}
	return 0;
}

SWITCH_DECLARE(switch_xml_t) switch_xml_open_cfg(const char *file_path, switch_xml_t *node, switch_event_t *params)
{
	xml_file_t *f;
	shim_xml_t *root = NULL;
	(void) params;

	*node = NULL;
	if (!file_path) {
		return NULL;
	}
	pthread_rwlock_rdlock(&g_xml_rw);
	for (f = g_xml_files; f; f = f->next) {
		const char *s = NULL, *e = NULL;
		int r = find_configuration(f->text, file_path, &s, &e);
		if (r < 0) {
			SHIM_LOG(SWITCH_LOG_ERROR, "Error[unclosed <configuration name=\"%s\"> in %s]\n", file_path, f->path);
			continue;
		}
		if (r > 0) {
			shim_xml_t *cfg = xcalloc(sizeof(*cfg));
			root = xcalloc(sizeof(*root));
			root->is_root = 1;
			root->text = xstrdup(f->text);
			root->x.name = (char *) "document";
			root->child = cfg;
			cfg->text = xcalloc((size_t) (e - s) + 1);
			memcpy(cfg->text, s, (size_t) (e - s));
			cfg->x.name = (char *) "configuration";
			cfg->x.parent = &root->x;
			root->x.child = &cfg->x;
			*node = &cfg->x;
			break;
		}
	}
	pthread_rwlock_unlock(&g_xml_rw);
	/* Like the core, no log when it is missing: the module says "open of ... failed". */
	return root ? &root->x : NULL;
}

SWITCH_DECLARE(char *) switch_xml_toxml_ex(switch_xml_t xml, switch_bool_t prn_header, switch_bool_t use_utf8_encoding)
{
	shim_xml_t *x = (shim_xml_t *) xml;
	(void) prn_header;
	(void) use_utf8_encoding;
	if (!x) {
		return NULL;
	}
	return xstrdup(x->text);
}

SWITCH_DECLARE(void) switch_xml_free(switch_xml_t xml)
{
	shim_xml_t *x = (shim_xml_t *) xml;
	if (!x) {
		return;
	}
	if (!x->is_root) {
		/* The core would free a subtree of the registry here; no module should do that. */
		SHIM_LOG(SWITCH_LOG_CRIT, "switch_xml_free() called on a node that is not the root returned by switch_xml_open_cfg()\n");
		return;
	}
	if (x->child) {
		free(x->child->text);
		free(x->child);
	}
	free(x->text);
	free(x);
}

/* ------------------------------------------------------------------------------------------ */
/* Sessions and channels                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* Caller profile fields that switch_caller_get_field_by_name() answers. */
enum {
	PF_USERNAME, PF_DIALPLAN, PF_CALLER_ID_NAME, PF_CALLER_ID_NUMBER, PF_ORIG_CALLER_ID_NAME,
	PF_ORIG_CALLER_ID_NUMBER, PF_CALLEE_ID_NAME, PF_CALLEE_ID_NUMBER, PF_ANI, PF_ANIII, PF_NETWORK_ADDR,
	PF_RDNIS, PF_DESTINATION_NUMBER, PF_SOURCE, PF_TRANSFER_SOURCE, PF_CONTEXT, PF_CHAN_NAME, PF_COUNT
};
static const char *PF_NAMES[PF_COUNT] = {
	"username", "dialplan", "caller_id_name", "caller_id_number", "orig_caller_id_name",
	"orig_caller_id_number", "callee_id_name", "callee_id_number", "ani", "aniii", "network_addr",
	"rdnis", "destination_number", "source", "transfer_source", "context", "chan_name"
};

static int profile_field(const char *name)
{
	int i;
	for (i = 0; i < PF_COUNT; i++) {
		if (!strcasecmp(name, PF_NAMES[i])) {
			return i;
		}
	}
	return -1;
}

struct switch_channel {
	switch_core_session_t *session;
	pthread_mutex_t lock; /* the core's profile_mutex (nested) */
	switch_event_t *variables;
	char *profile[PF_COUNT];
	char *name;
	int outbound;
	int pre_answered;
	int answered;
	int hungup;
	char *hangup_cause;
	int64_t created_us;
	int64_t answered_us;
	int64_t hangup_us;
	char *last_app;
	char *last_arg;
	switch_channel_state_t state;
};

struct switch_core_session {
	char *uuid;
	switch_channel_t *channel;
	switch_memory_pool_t *pool;
	pthread_mutex_t exec_lock; /* one application at a time, like a session thread */
	int refs;                  /* jobs queued or running on it, plus the table's own */
	struct switch_core_session *next;
};

static pthread_mutex_t g_sess_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_sess_cond = PTHREAD_COND_INITIALIZER;
static switch_core_session_t *g_sessions;

SWITCH_DECLARE(switch_channel_t *) switch_core_session_get_channel(switch_core_session_t *session)
{
	return session ? session->channel : NULL;
}

/* A call's own log level (uuid_loglevel); as in the core, 0 unless raised. */
SWITCH_DECLARE(switch_log_level_t) switch_core_session_get_loglevel(switch_core_session_t *session)
{
	(void) session;
	return SWITCH_LOG_CONSOLE;
}

SWITCH_DECLARE(char *) switch_core_session_get_uuid(switch_core_session_t *session)
{
	return session ? session->uuid : NULL;
}

SWITCH_DECLARE(char *) switch_channel_get_name(switch_channel_t *channel)
{
	return channel ? channel->name : NULL;
}

SWITCH_DECLARE(const char *) switch_channel_get_variable_dup(switch_channel_t *channel, const char *varname, switch_bool_t dup, int idx)
{
	const char *v = NULL, *r = NULL;

	if (!channel) {
		return NULL;
	}
	pthread_mutex_lock(&channel->lock);
	if (!zstr(varname)) {
		if (!(v = switch_event_get_header_idx(channel->variables, varname, idx))) {
			int pf;
			if (!strcasecmp(varname, "uuid")) {
				v = channel->session->uuid;
			} else if ((pf = profile_field(varname)) >= 0) {
				v = channel->profile[pf];
			}
		}
	}
	if (dup) {
		if (v) {
			r = pool_strdup(channel->session->pool, v); /* freed with the session */
		}
	} else {
		r = v;
	}
	pthread_mutex_unlock(&channel->lock);
	return r;
}

SWITCH_DECLARE(switch_status_t) switch_channel_set_variable_var_check(switch_channel_t *channel, const char *varname, const char *value,
																	  switch_bool_t var_check)
{
	switch_status_t st = SWITCH_STATUS_FALSE;

	if (!channel) {
		return st;
	}
	pthread_mutex_lock(&channel->lock);
	if (channel->variables && !zstr(varname)) {
		if (zstr(value)) {
			header_delete(channel->variables, varname);
		} else if (var_check && switch_string_var_check_const(value)) {
			/* The core refuses the value, logs CRIT, and still returns SUCCESS. */
			switch_log_printf(SWITCH_CHANNEL_ID_SESSION, __FILE__, __func__, __LINE__, (const char *) channel->session,
							  SWITCH_LOG_CRIT, "Invalid data (${%s} contains a variable)\n", varname);
		} else {
			switch_event_add_header_string(channel->variables, SWITCH_STACK_BOTTOM, varname, value);
		}
		st = SWITCH_STATUS_SUCCESS;
	}
	pthread_mutex_unlock(&channel->lock);
	return st;
}

static const char *CS_NAMES[] = {
	"CS_NEW", "CS_INIT", "CS_ROUTING", "CS_SOFT_EXECUTE", "CS_EXECUTE", "CS_EXCHANGE_MEDIA", "CS_PARK",
	"CS_CONSUME_MEDIA", "CS_HIBERNATE", "CS_RESET", "CS_HANGUP", "CS_REPORTING", "CS_DESTROY", "CS_NONE"
};

/* switch_channel_event_set_data(): basic channel data, the caller profile, then every variable. */
static void channel_event_set_data(switch_channel_t *c, switch_event_t *e)
{
	switch_event_header_t *hp;
	const char *v;
	char buf[1024];
	int i;
	static const struct {
		int field;
		const char *header;
	} prof[] = {
		{ PF_USERNAME, "Username" }, { PF_DIALPLAN, "Dialplan" }, { PF_CALLER_ID_NAME, "Caller-ID-Name" },
		{ PF_CALLER_ID_NUMBER, "Caller-ID-Number" }, { PF_ORIG_CALLER_ID_NAME, "Orig-Caller-ID-Name" },
		{ PF_ORIG_CALLER_ID_NUMBER, "Orig-Caller-ID-Number" }, { PF_CALLEE_ID_NAME, "Callee-ID-Name" },
		{ PF_CALLEE_ID_NUMBER, "Callee-ID-Number" }, { PF_NETWORK_ADDR, "Network-Addr" }, { PF_ANI, "ANI" },
		{ PF_ANIII, "ANI-II" }, { PF_DESTINATION_NUMBER, "Destination-Number" }, { -1, "Unique-ID" },
		{ PF_SOURCE, "Source" }, { PF_TRANSFER_SOURCE, "Transfer-Source" }, { PF_CONTEXT, "Context" },
		{ PF_RDNIS, "RDNIS" }, { PF_CHAN_NAME, "Channel-Name" }
	};

	pthread_mutex_lock(&c->lock);
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Channel-State", CS_NAMES[c->state]);
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Channel-Call-State",
								   c->hungup ? "HANGUP" : c->answered ? "ACTIVE" : c->pre_answered ? "EARLY" : "RINGING");
	event_add_headerf(e, "Channel-State-Number", "%d", (int) c->state);
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Channel-Name", c->name);
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Unique-ID", c->session->uuid);
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Call-Direction", c->outbound ? "outbound" : "inbound");
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Presence-Call-Direction", c->outbound ? "outbound" : "inbound");
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Channel-HIT-Dialplan", c->outbound ? "false" : "true");
	if ((v = switch_event_get_header_idx(c->variables, "presence_id", -1))) {
		switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Channel-Presence-ID", v);
	}
	v = switch_event_get_header_idx(c->variables, "call_uuid", -1);
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Channel-Call-UUID", v ? v : c->session->uuid);
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Answer-State",
								   c->hungup ? "hangup" : c->answered ? "answered" : c->pre_answered ? "early" : "ringing");
	if (c->hangup_cause) {
		switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Hangup-Cause", c->hangup_cause);
	}
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Caller-Direction", c->outbound ? "outbound" : "inbound");
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Caller-Logical-Direction", c->outbound ? "outbound" : "inbound");
	for (i = 0; i < (int) (sizeof(prof) / sizeof(prof[0])); i++) {
		v = prof[i].field < 0 ? c->session->uuid : c->profile[prof[i].field];
		if (!zstr(v)) {
			snprintf(buf, sizeof(buf), "Caller-%s", prof[i].header);
			switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, buf, v);
		}
	}
	switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Caller-Profile-Index", "1");
	event_add_headerf(e, "Caller-Profile-Created-Time", "%lld", (long long) c->created_us);
	event_add_headerf(e, "Caller-Channel-Created-Time", "%lld", (long long) c->created_us);
	event_add_headerf(e, "Caller-Channel-Answered-Time", "%lld", (long long) c->answered_us);
	event_add_headerf(e, "Caller-Channel-Progress-Time", "%d", 0);
	event_add_headerf(e, "Caller-Channel-Progress-Media-Time", "%d", 0);
	event_add_headerf(e, "Caller-Channel-Hangup-Time", "%lld", (long long) c->hangup_us);
	for (hp = c->variables->headers; hp; hp = hp->next) {
		snprintf(buf, sizeof(buf), "variable_%s", hp->name);
		switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, buf, hp->value);
	}
	pthread_mutex_unlock(&c->lock);
}

static switch_core_session_t *session_create(const char *uuid)
{
	switch_core_session_t *s = xcalloc(sizeof(*s));
	switch_channel_t *c = xcalloc(sizeof(*c));
	pthread_mutexattr_t a;

	s->uuid = xstrdup(uuid);
	s->pool = pool_create();
	s->refs = 1;
	pthread_mutex_init(&s->exec_lock, NULL);
	s->channel = c;
	c->session = s;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&c->lock, &a);
	pthread_mutexattr_destroy(&a);
	c->variables = event_create_plain(SWITCH_EVENT_CHANNEL_DATA);
	c->created_us = now_us();
	c->state = CS_EXECUTE;
	c->profile[PF_DIALPLAN] = xstrdup("XML");
	c->profile[PF_CONTEXT] = xstrdup("default");
	c->profile[PF_SOURCE] = xstrdup("host-shim");
	return s;
}

static void session_destroy(switch_core_session_t *s)
{
	int i;
	switch_channel_t *c = s->channel;
	switch_event_destroy(&c->variables);
	for (i = 0; i < PF_COUNT; i++) {
		free(c->profile[i]);
	}
	free(c->name);
	free(c->hangup_cause);
	free(c->last_app);
	free(c->last_arg);
	pthread_mutex_destroy(&c->lock);
	free(c);
	pool_destroy(s->pool);
	pthread_mutex_destroy(&s->exec_lock);
	free(s->uuid);
	free(s);
}

/* Find a live session and take a reference on it. */
static switch_core_session_t *session_get(const char *uuid)
{
	switch_core_session_t *s;
	pthread_mutex_lock(&g_sess_lock);
	for (s = g_sessions; s; s = s->next) {
		if (!strcmp(s->uuid, uuid)) {
			s->refs++;
			break;
		}
	}
	pthread_mutex_unlock(&g_sess_lock);
	return s;
}

static void session_put(switch_core_session_t *s)
{
	pthread_mutex_lock(&g_sess_lock);
	s->refs--;
	pthread_cond_broadcast(&g_sess_cond);
	pthread_mutex_unlock(&g_sess_lock);
}

/* Mark the channel hung up (first cause wins, as in the core). */
static void channel_hangup(switch_channel_t *c, const char *cause)
{
	pthread_mutex_lock(&c->lock);
	if (!c->hungup) {
		c->hungup = 1;
		c->hangup_us = now_us();
		c->hangup_cause = xstrdup(cause);
		c->state = CS_HANGUP;
		switch_log_printf(SWITCH_CHANNEL_ID_SESSION, __FILE__, __func__, __LINE__, (const char *) c->session, SWITCH_LOG_NOTICE,
						  "Hangup %s [CS_EXECUTE] [%s]\n", c->name, cause);
	}
	pthread_mutex_unlock(&c->lock);
}

/* switch_core_session_hupall_matching_var(): hang up every session whose variable has that value. */
static void hupall_matching_var(const char *var, const char *val, const char *cause)
{
	switch_core_session_t *s;
	pthread_mutex_lock(&g_sess_lock);
	for (s = g_sessions; s; s = s->next) {
		const char *v;
		pthread_mutex_lock(&s->channel->lock);
		v = switch_event_get_header_idx(s->channel->variables, var, -1);
		if (v && !strcmp(v, val)) {
			channel_hangup(s->channel, cause);
		}
		pthread_mutex_unlock(&s->channel->lock);
	}
	pthread_mutex_unlock(&g_sess_lock);
}

/* ------------------------------------------------------------------------------------------ */
/* Modules                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct shim_module {
	char *name;
	char *path;
	void *dl;
	switch_loadable_module_function_table_t *table;
	switch_loadable_module_interface_t *mi;
	switch_memory_pool_t *pool;
	void *base; /* load address of the .so, to recognise its callbacks */
	unsigned long serial;
	int perm;
	pthread_t runtime_thread;
	int has_runtime;
	volatile int shutting_down;
	struct shim_module *next;
} shim_module_t;

typedef struct reg_entry {
	int is_api;
	char *name;
	void *iface;
	shim_module_t *mod;
	struct reg_entry *next;
} reg_entry_t;

typedef struct known_path {
	char *name;
	char *path;
	struct known_path *next;
} known_path_t;

static pthread_mutex_t g_mod_lock = PTHREAD_MUTEX_INITIALIZER;
static shim_module_t *g_modules;
static shim_module_t *g_perm_modules; /* NOUNLOAD modules after shutdown */
/* Pools of modules stopped at process shutdown: the core keeps a module's pool until the process
 * ends (do_shutdown without unload), so they stay reachable here too. */
static struct kept_pool {
	switch_memory_pool_t *pool;
	struct kept_pool *next;
} *g_kept_pools;

/* Built for a sanitizer (scripts/sanitize.sh), modules stay mapped after dlclose: a Rust cdylib's
 * statics own heap memory (tracing's dispatcher registry) that LeakSanitizer would report once
 * the image is gone, and frames in an unmapped image cannot be symbolized in any other report. */
#ifdef SHIM_SANITIZER
#define SHIM_DLOPEN_KEEP RTLD_NODELETE
#else
#define SHIM_DLOPEN_KEEP 0
#endif
static reg_entry_t *g_registry;
static known_path_t *g_known_paths;

SWITCH_DECLARE(switch_loadable_module_interface_t *) switch_loadable_module_create_module_interface(switch_memory_pool_t *pool,
																								   const char *name)
{
	switch_loadable_module_interface_t *mod;
	if (!pool || !name) {
		return NULL;
	}
	mod = pool_alloc(pool, sizeof(*mod));
	mod->pool = pool;
	mod->module_name = pool_strdup(pool, name);
	mod->rwlock = pool_rwlock(pool);
	return mod;
}

#define SHIM_ALLOC_INTERFACE(TYPE, FIELD)                                                      \
	do {                                                                                       \
		TYPE *i_, *p_;                                                                         \
		i_ = pool_alloc(mod->pool, sizeof(TYPE));                                              \
		for (p_ = mod->FIELD; p_ && p_->next; p_ = p_->next)                                   \
			;                                                                                  \
		if (p_) {                                                                              \
			p_->next = i_;                                                                     \
		} else {                                                                               \
			mod->FIELD = i_;                                                                   \
		}                                                                                      \
		i_->rwlock = pool_rwlock(mod->pool);                                                   \
		i_->reflock = pool_mutex(mod->pool);                                                   \
		i_->parent = mod;                                                                      \
		return i_;                                                                             \
	} while (0)

SWITCH_DECLARE(void *) switch_loadable_module_create_interface(switch_loadable_module_interface_t *mod, switch_module_interface_name_t iname)
{
	if (!mod) {
		return NULL;
	}
	switch (iname) {
	case SWITCH_APPLICATION_INTERFACE:
		SHIM_ALLOC_INTERFACE(switch_application_interface_t, application_interface);
	case SWITCH_API_INTERFACE:
		SHIM_ALLOC_INTERFACE(switch_api_interface_t, api_interface);
	case SWITCH_CHAT_APPLICATION_INTERFACE:
		SHIM_ALLOC_INTERFACE(switch_chat_application_interface_t, chat_application_interface);
	case SWITCH_JSON_API_INTERFACE:
		SHIM_ALLOC_INTERFACE(switch_json_api_interface_t, json_api_interface);
	case SWITCH_LIMIT_INTERFACE:
		SHIM_ALLOC_INTERFACE(switch_limit_interface_t, limit_interface);
	default:
		/* the core supports more kinds; the shim only runs applications and APIs */
		SHIM_LOG(SWITCH_LOG_WARNING, "Invalid Module Type!\n");
		return NULL;
	}
}

/* PROTECT_INTERFACE / UNPROTECT_INTERFACE of switch_module_interfaces.h, for both kinds. */
static void iface_protect(reg_entry_t *r)
{
	switch_thread_rwlock_t *rw;
	switch_mutex_t *ref;
	switch_loadable_module_interface_t *parent;
	int *refs;
	if (r->is_api) {
		switch_api_interface_t *a = r->iface;
		rw = a->rwlock, ref = a->reflock, parent = a->parent, refs = &a->refs;
	} else {
		switch_application_interface_t *a = r->iface;
		rw = a->rwlock, ref = a->reflock, parent = a->parent, refs = &a->refs;
	}
	pthread_rwlock_rdlock(&parent->rwlock->rw);
	pthread_rwlock_rdlock(&rw->rw);
	pthread_mutex_lock(&ref->m);
	(*refs)++;
	parent->refs++;
	pthread_mutex_unlock(&ref->m);
}

static void iface_unprotect(int is_api, void *iface)
{
	switch_thread_rwlock_t *rw;
	switch_mutex_t *ref;
	switch_loadable_module_interface_t *parent;
	int *refs;
	if (is_api) {
		switch_api_interface_t *a = iface;
		rw = a->rwlock, ref = a->reflock, parent = a->parent, refs = &a->refs;
	} else {
		switch_application_interface_t *a = iface;
		rw = a->rwlock, ref = a->reflock, parent = a->parent, refs = &a->refs;
	}
	pthread_mutex_lock(&ref->m);
	(*refs)--;
	parent->refs--;
	pthread_mutex_unlock(&ref->m);
	pthread_rwlock_unlock(&rw->rw);
	pthread_rwlock_unlock(&parent->rwlock->rw);
}

/* Look an application/API up and protect it; the last one registered under a name wins. */
static void *iface_get(int is_api, const char *name)
{
	reg_entry_t *r, *found = NULL;
	void *iface = NULL;
	pthread_mutex_lock(&g_mod_lock);
	for (r = g_registry; r; r = r->next) {
		if (r->is_api == is_api && !strcmp(r->name, name)) {
			found = r; /* list is newest first */
			break;
		}
	}
	if (found) {
		iface_protect(found);
		iface = found->iface;
	}
	pthread_mutex_unlock(&g_mod_lock);
	return iface;
}

static void fire_module_event(switch_event_types_t id, const char *type, const char *name, const char *desc, const char *syntax,
							  shim_module_t *m)
{
	switch_event_t *e;
	if (SHIM_EVENT_CREATE(&e, id) == SWITCH_STATUS_SUCCESS) {
		switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "type", type);
		switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "name", name);
		switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "description", desc ? desc : "");
		switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "syntax", syntax ? syntax : "");
		switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "key", m->name);
		switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "filename", m->path);
		SHIM_FIRE(&e);
	}
}

/* switch_loadable_module_process(): register what load() created. Caller holds g_mod_lock. */
static void module_process(shim_module_t *m)
{
	switch_application_interface_t *app;
	switch_api_interface_t *api;
	reg_entry_t *r;

	for (app = m->mi->application_interface; app; app = app->next) {
		if (!app->interface_name) {
			SHIM_LOG(SWITCH_LOG_CRIT, "Failed to load application interface from %s due to no interface name.\n", m->name);
			continue;
		}
		SHIM_LOG(SWITCH_LOG_NOTICE, "Adding Application '%s'\n", app->interface_name);
		r = xcalloc(sizeof(*r));
		r->name = xstrdup(app->interface_name);
		r->iface = app;
		r->mod = m;
		r->next = g_registry;
		g_registry = r;
		fire_module_event(SWITCH_EVENT_MODULE_LOAD, "application", app->interface_name, app->short_desc, app->syntax, m);
	}
	for (api = m->mi->api_interface; api; api = api->next) {
		if (!api->interface_name) {
			SHIM_LOG(SWITCH_LOG_CRIT, "Failed to load api interface from %s due to no interface name.\n", m->name);
			continue;
		}
		SHIM_LOG(SWITCH_LOG_NOTICE, "Adding API Function '%s'\n", api->interface_name);
		r = xcalloc(sizeof(*r));
		r->is_api = 1;
		r->name = xstrdup(api->interface_name);
		r->iface = api;
		r->mod = m;
		r->next = g_registry;
		g_registry = r;
		fire_module_event(SWITCH_EVENT_MODULE_LOAD, "api", api->interface_name, api->desc, api->syntax, m);
	}
}

/* Remove a module's registry entries. Caller holds g_mod_lock. */
static void module_unregister(shim_module_t *m)
{
	reg_entry_t **pp = &g_registry, *r;
	while ((r = *pp)) {
		if (r->mod == m) {
			*pp = r->next;
			free(r->name);
			free(r);
		} else {
			pp = &r->next;
		}
	}
}

static void *runtime_main(void *arg)
{
	shim_module_t *m = arg;
	switch_status_t st = SWITCH_STATUS_SUCCESS;
	while (st != SWITCH_STATUS_TERM && !m->shutting_down) {
		st = m->table->runtime();
	}
	return NULL;
}

static void remember_path(const char *name, const char *path)
{
	known_path_t *k;
	for (k = g_known_paths; k; k = k->next) {
		if (!strcmp(k->name, name)) {
			free(k->path);
			k->path = xstrdup(path);
			return;
		}
	}
	k = xcalloc(sizeof(*k));
	k->name = xstrdup(name);
	k->path = xstrdup(path);
	k->next = g_known_paths;
	g_known_paths = k;
}

static int report_leaks(shim_module_t *m, sbuf_t *out, int mark_dangling);

/* switch_loadable_module_load_file() + process. Returns NULL and sets *err on failure. */
static shim_module_t *module_load(const char *path, const char *name, const char **err, sbuf_t *out)
{
	shim_module_t *m, *x;
	switch_memory_pool_t *pool;
	void *dl;
	char *sym;
	switch_loadable_module_function_table_t *table;
	switch_loadable_module_interface_t *mi = NULL;
	switch_status_t st;
	Dl_info info;
	int global = 0;

	pthread_mutex_lock(&g_mod_lock);
	for (x = g_modules; x; x = x->next) {
		if (!strcmp(x->name, name)) {
			pthread_mutex_unlock(&g_mod_lock);
			SHIM_LOG(SWITCH_LOG_WARNING, "Module %s Already Loaded!\n", name);
			*err = "Module already loaded";
			return NULL;
		}
	}
	pthread_mutex_unlock(&g_mod_lock);

	remember_path(name, path);
	sym = xasprintf("%s_module_interface", name);
	for (;;) {
		dl = dlopen(path, RTLD_NOW | SHIM_DLOPEN_KEEP | (global ? RTLD_GLOBAL : RTLD_LOCAL));
		if (!dl) {
			const char *e = dlerror();
			SHIM_LOG(SWITCH_LOG_CRIT, "Error Loading module %s\n**%s**\n", path, e ? e : "dlopen failed");
			sb_puts(out, "dlerror ");
			sb_escaped(out, e ? e : "");
			sb_puts(out, "\n");
			free(sym);
			*err = "dlopen failed";
			return NULL;
		}
		table = dlsym(dl, sym);
		if (!table) {
			const char *e = dlerror();
			SHIM_LOG(SWITCH_LOG_CRIT, "Error Loading module %s\n**%s**\n", path, e ? e : "no symbol");
			dlclose(dl);
			free(sym);
			*err = "symbol not found";
			return NULL;
		}
		if (table->switch_api_version != SWITCH_API_VERSION) {
			SHIM_LOG(SWITCH_LOG_CRIT, "Error Loading module %s\n**%s**\n", path,
					 "Trying to load an out of date module, please rebuild the module.");
			dlclose(dl);
			free(sym);
			*err = "Trying to load an out of date module, please rebuild the module.";
			return NULL;
		}
		if (!global && (table->flags & SMODF_GLOBAL_SYMBOLS)) {
			global = 1;
			dlclose(dl);
			SHIM_LOG(SWITCH_LOG_DEBUG, "Loading module with global namespace at request of module\n");
			continue;
		}
		break;
	}
	free(sym);

	if (!table->load) {
		SHIM_LOG(SWITCH_LOG_CRIT, "Error Loading module %s\n**%s**\n", path,
				 "Cannot locate symbol 'switch_module_load' please make sure this is a valid module.");
		dlclose(dl);
		*err = "no load function";
		return NULL;
	}

	m = xcalloc(sizeof(*m));
	m->serial = next_serial();
	m->name = xstrdup(name);
	m->path = xstrdup(path);
	if (dladdr((void *) table, &info) && info.dli_fbase) {
		m->base = info.dli_fbase;
	}
	pool = pool_create();
	st = table->load(&mi, pool);
	sb_printf(out, "load_status %s\n", status_name(st));
	if ((st != SWITCH_STATUS_SUCCESS && st != SWITCH_STATUS_NOUNLOAD) || !mi) {
		*err = mi ? "Module load routine returned an error"
				  : "Module failed to initialize its module_interface. Is this a valid module?";
		SHIM_LOG(SWITCH_LOG_CRIT, "Error Loading module %s\n**%s**\n", path, *err);
		/* Like the core: the pool and the library go, whatever the module left bound. */
		events_wait_idle();
		report_leaks(m, out, 1);
		pool_destroy(pool);
		dlclose(dl);
		free(m->name);
		free(m->path);
		free(m);
		return NULL;
	}

	m->dl = dl;
	m->table = table;
	m->mi = mi;
	m->pool = pool;
	m->perm = st == SWITCH_STATUS_NOUNLOAD;
	SHIM_LOG(SWITCH_LOG_CONSOLE, "Successfully Loaded [%s]\n", mi->module_name);

	pthread_mutex_lock(&g_mod_lock);
	m->next = g_modules;
	g_modules = m;
	module_process(m);
	pthread_mutex_unlock(&g_mod_lock);

	if (table->runtime) {
		m->has_runtime = 1;
		pthread_create(&m->runtime_thread, NULL, runtime_main, m);
	}
	return m;
}

/* What the module left behind: bindings whose callback is in its code, reservations made since it loaded. */
static int report_leaks(shim_module_t *m, sbuf_t *out, int mark_dangling)
{
	int leaks = 0, e;
	switch_event_node_t *n;
	subclass_res_t *r;
	Dl_info info;

	pthread_rwlock_wrlock(&g_bind_rw);
	for (e = 0; e <= SWITCH_EVENT_ALL; e++) {
		for (n = g_nodes[e]; n; n = n->next) {
			if (n->dangling || !m->base) {
				continue;
			}
			if (dladdr((void *) n->callback, &info) && info.dli_fbase == m->base) {
				leaks++;
				sb_puts(out, "leak binding id=");
				sb_escaped(out, n->id);
				sb_printf(out, " event=%s subclass=", event_name(n->event_id));
				sb_escaped(out, n->subclass_name ? n->subclass_name : "-");
				sb_puts(out, "\n");
				SHIM_LOG(SWITCH_LOG_CRIT, "Module %s left an event binding: %s %s %s\n", m->name, n->id, event_name(n->event_id),
						 n->subclass_name ? n->subclass_name : "");
				if (mark_dangling) {
					n->dangling = 1;
				}
			}
		}
	}
	pthread_rwlock_unlock(&g_bind_rw);

	pthread_mutex_lock(&g_subclass_lock);
	for (r = g_subclasses; r; r = r->next) {
		if (!r->bind && r->serial > m->serial) {
			leaks++;
			sb_puts(out, "leak subclass owner=");
			sb_escaped(out, r->owner);
			sb_puts(out, " name=");
			sb_escaped(out, r->name);
			sb_puts(out, "\n");
			SHIM_LOG(SWITCH_LOG_CRIT, "Module %s left a subclass reservation: %s (owner %s)\n", m->name, r->name, r->owner);
		}
	}
	pthread_mutex_unlock(&g_subclass_lock);
	sb_printf(out, "leaks %d\n", leaks);
	return leaks;
}

/* switch_loadable_module_unprocess(): delete interfaces, hang up their calls, wait for references. */
static void module_unprocess(shim_module_t *m)
{
	switch_application_interface_t *app;
	switch_api_interface_t *api;

	for (app = m->mi->application_interface; app; app = app->next) {
		if (!app->interface_name) {
			continue;
		}
		SHIM_LOG(SWITCH_LOG_NOTICE, "Deleting Application '%s'\n", app->interface_name);
		hupall_matching_var(SWITCH_CURRENT_APPLICATION_VARIABLE, app->interface_name, "MANAGER_REQUEST");
		SHIM_LOG(SWITCH_LOG_DEBUG, "Write lock interface '%s' to wait for existing references.\n", app->interface_name);
		if (rwlock_trywrlock_timeout(app->rwlock, 10)) {
			pthread_rwlock_unlock(&app->rwlock->rw);
		} else {
			SHIM_LOG(SWITCH_LOG_ERROR, "Giving up on '%s' waiting for existing references.\n", app->interface_name);
		}
		fire_module_event(SWITCH_EVENT_MODULE_UNLOAD, "application", app->interface_name, app->short_desc, app->syntax, m);
	}
	for (api = m->mi->api_interface; api; api = api->next) {
		if (!api->interface_name) {
			continue;
		}
		SHIM_LOG(SWITCH_LOG_NOTICE, "Deleting API Function '%s'\n", api->interface_name);
		SHIM_LOG(SWITCH_LOG_DEBUG, "Write lock interface '%s' to wait for existing references.\n", api->interface_name);
		if (rwlock_trywrlock_timeout(api->rwlock, 10)) {
			pthread_rwlock_unlock(&api->rwlock->rw);
		} else {
			SHIM_LOG(SWITCH_LOG_ERROR, "Giving up on '%s' waiting for existing references.\n", api->interface_name);
		}
		fire_module_event(SWITCH_EVENT_MODULE_UNLOAD, "api", api->interface_name, api->desc, api->syntax, m);
	}
}

/*
 * switch_loadable_module_unload_module() + do_shutdown(). Without force, a module whose
 * application or API is executing is refused ("Module in use."), as in the core; with force the
 * interfaces are deleted first and each is waited for (up to 10 s) before shutdown.
 * unload = 0 is the core's shutdown path: shutdown() runs but the library stays mapped.
 */
static switch_status_t module_unload(const char *name, int force, int unload, const char **err, sbuf_t *out)
{
	shim_module_t **pp, *m = NULL;
	switch_status_t st;
	int locked = 0;

	pthread_mutex_lock(&g_mod_lock);
	for (pp = &g_modules; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->name, name)) {
			m = *pp;
			break;
		}
	}
	if (!m) {
		pthread_mutex_unlock(&g_mod_lock);
		*err = "No such module!";
		return SWITCH_STATUS_FALSE;
	}
	if (m->perm && unload) {
		pthread_mutex_unlock(&g_mod_lock);
		SHIM_LOG(SWITCH_LOG_CRIT, "Module is not unloadable.\n");
		*err = "Module is not unloadable";
		return SWITCH_STATUS_NOUNLOAD;
	}
	if (!force && unload) {
		/* taken under g_mod_lock, so no new reference can slip in between */
		if (pthread_rwlock_trywrlock(&m->mi->rwlock->rw) != 0) {
			pthread_mutex_unlock(&g_mod_lock);
			SHIM_LOG(SWITCH_LOG_WARNING, "Module %s is in use, cannot unload.\n", m->mi->module_name);
			*err = "Module in use.";
			return SWITCH_STATUS_FALSE;
		}
		locked = 1;
	}
	*pp = m->next;
	/* no new reference from here on: the names go before the lock is released */
	module_unregister(m);
	pthread_mutex_unlock(&g_mod_lock);

	m->shutting_down = 1;
	module_unprocess(m);
	if (!locked) {
		/* Not in the core: also wait for the module-wide lock, so that no thread is still inside
		 * UNPROTECT_INTERFACE (it releases the interface before the module) when the pool goes. */
		if (rwlock_trywrlock_timeout(m->mi->rwlock, 10)) {
			pthread_rwlock_unlock(&m->mi->rwlock->rw);
		}
	}
	if (m->table->shutdown) {
		SHIM_LOG(SWITCH_LOG_CONSOLE, "Stopping: %s\n", m->mi->module_name);
		st = m->table->shutdown();
	} else {
		SHIM_LOG(SWITCH_LOG_CONSOLE, "%s has no shutdown routine\n", m->mi->module_name);
		st = SWITCH_STATUS_SUCCESS;
	}
	sb_printf(out, "shutdown_status %s\n", status_name(st));
	if (locked) {
		pthread_rwlock_unlock(&m->mi->rwlock->rw);
	}
	if (m->has_runtime) {
		SHIM_LOG(SWITCH_LOG_CONSOLE, "%s stopping runtime thread.\n", m->mi->module_name);
		pthread_join(m->runtime_thread, NULL);
	}
	/* Let events fired during shutdown reach the module's handlers before judging leaks. */
	events_wait_idle();
	report_leaks(m, out, unload && st != SWITCH_STATUS_NOUNLOAD);

	if (unload && st != SWITCH_STATUS_NOUNLOAD) {
		SHIM_LOG(SWITCH_LOG_CONSOLE, "%s unloaded.\n", m->mi->module_name);
		void *again;
		dlclose(m->dl);
		pool_destroy(m->pool);
		sb_puts(out, "dlclose yes\n");
		/* glibc keeps a library mapped after dlclose when, e.g., it registered thread-local
		 * destructors (Rust std does); a later load then sees its old statics. Say which. */
		if ((again = dlopen(m->path, RTLD_NOW | RTLD_NOLOAD))) {
			dlclose(again);
			sb_puts(out, "still_mapped yes\n");
		} else {
			sb_puts(out, "still_mapped no\n");
		}
	} else {
		/* kept mapped: its code may still run (NOUNLOAD, or process shutdown) */
		struct kept_pool *kept = xcalloc(sizeof(*kept));
		kept->pool = m->pool;
		kept->next = g_kept_pools;
		g_kept_pools = kept;
		sb_puts(out, "dlclose no\n");
	}
	free(m->name);
	free(m->path);
	free(m);
	return SWITCH_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------------------------ */
/* API and application execution                                                               */
/* ------------------------------------------------------------------------------------------ */

static switch_status_t stream_raw_write(switch_stream_handle_t *h, uint8_t *data, switch_size_t datalen)
{
	switch_size_t need = h->data_len + datalen + 1;
	if (need > h->data_size) {
		switch_size_t size = h->data_size;
		void *nd;
		while (size < need) {
			size += h->alloc_chunk ? h->alloc_chunk : 1024;
		}
		if (!(nd = realloc(h->data, size))) {
			return SWITCH_STATUS_MEMERR;
		}
		h->data = nd;
		h->data_size = size;
		h->alloc_len = size;
	}
	memcpy((char *) h->data + h->data_len, data, datalen);
	h->data_len += datalen;
	((char *) h->data)[h->data_len] = '\0';
	h->end = (char *) h->data + h->data_len;
	return SWITCH_STATUS_SUCCESS;
}

static switch_status_t stream_write(switch_stream_handle_t *h, const char *fmt, ...)
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
	st = stream_raw_write(h, (uint8_t *) s, (switch_size_t) n);
	free(s);
	return st;
}

static char *strip_ws(const char *s)
{
	const char *b = s ? s : "", *e;
	while (*b == 13 || *b == 10 || *b == 9 || *b == 32 || *b == 11) {
		b++;
	}
	e = b + strlen(b);
	while (e > b && (e[-1] == 13 || e[-1] == 10 || e[-1] == 9 || e[-1] == 32 || e[-1] == 11)) {
		e--;
	}
	{
		char *r = xcalloc((size_t) (e - b) + 1);
		memcpy(r, b, (size_t) (e - b));
		return r;
	}
}

/* switch_api_execute() as the console calls it: session NULL, a growing stream, an API event. */
static void run_api(const char *cmd, const char *arg, sbuf_t *out)
{
	switch_stream_handle_t stream = { 0 };
	switch_api_interface_t *api;
	switch_status_t st;
	char *cmd_used = strip_ws(cmd), *arg_used = strip_ws(arg);
	char *p, *line;

	stream.data = xcalloc(1024);
	stream.end = stream.data;
	stream.data_size = 1024;
	stream.alloc_len = 1024;
	stream.alloc_chunk = 1024;
	stream.write_function = stream_write;
	stream.raw_write_function = stream_raw_write;
	SHIM_EVENT_CREATE(&stream.param_event, SWITCH_EVENT_API);
	if (*cmd_used) {
		switch_event_add_header_string(stream.param_event, SWITCH_STACK_BOTTOM, "API-Command", cmd_used);
	}
	if (*arg_used) {
		switch_event_add_header_string(stream.param_event, SWITCH_STACK_BOTTOM, "API-Command-Argument", arg_used);
	}

	if (*cmd_used && (api = iface_get(1, cmd_used))) {
		if (api->function) {
			st = api->function(arg_used, NULL, &stream);
		} else {
			st = SWITCH_STATUS_FALSE;
		}
		if (st != SWITCH_STATUS_SUCCESS) {
			stream.write_function(&stream, "COMMAND RETURNED ERROR!\n");
		}
		iface_unprotect(1, api);
	} else {
		st = SWITCH_STATUS_FALSE;
		stream.write_function(&stream, "INVALID COMMAND!\n");
	}
	if (stream.param_event) {
		SHIM_FIRE(&stream.param_event);
	}

	sb_printf(out, "api_status %s\n", status_name(st));
	line = stream.data;
	while (line && *line) {
		p = strchr(line, '\n');
		if (p) {
			*p = '\0';
		}
		sb_puts(out, "out ");
		sb_escaped(out, line);
		sb_puts(out, "\n");
		line = p ? p + 1 : NULL;
	}
	sb_printf(out, "out_bytes %lu\n", (unsigned long) stream.data_len);
	free(stream.data);
	free(cmd_used);
	free(arg_used);
}

/* switch_true() without switch_is_number(): the words it accepts, or a non-zero integer. */
static int is_true(const char *v)
{
	static const char *yes[] = { "yes", "on", "true", "t", "enabled", "active", "allow" };
	size_t i;
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(v, yes[i])) {
			return 1;
		}
	}
	return atoi(v) != 0;
}

/* ${var} expansion of application data (one level; the core also expands recursively and runs ${api()}s). */
static char *expand_variables(switch_channel_t *c, const char *in)
{
	sbuf_t b = { 0 };
	const char *p = in;
	while (*p) {
		if (p[0] == '$' && p[1] == '{') {
			const char *e = strchr(p + 2, '}');
			if (e) {
				char *name = xcalloc((size_t) (e - p - 2) + 1);
				const char *v;
				memcpy(name, p + 2, (size_t) (e - p - 2));
				v = switch_channel_get_variable_dup(c, name, SWITCH_FALSE, -1);
				if (v) {
					sb_puts(&b, v);
				}
				free(name);
				p = e + 1;
				continue;
			}
		}
		sb_add(&b, p, 1);
		p++;
	}
	return b.data ? b.data : xstrdup("");
}

static void fire_execute_event(switch_core_session_t *s, switch_event_types_t id, const char *app, const char *data, const char *app_uuid)
{
	switch_event_t *e;
	if (SHIM_EVENT_CREATE(&e, id) == SWITCH_STATUS_SUCCESS) {
		channel_event_set_data(s->channel, e);
		switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Application", app);
		if (data) {
			switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Application-Data", data);
		}
		if (id == SWITCH_EVENT_CHANNEL_EXECUTE_COMPLETE) {
			const char *resp = switch_channel_get_variable_dup(s->channel, SWITCH_CURRENT_APPLICATION_RESPONSE_VARIABLE, SWITCH_FALSE, -1);
			switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Application-Response", resp ? resp : "_none_");
		}
		switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, "Application-UUID", app_uuid);
		SHIM_FIRE(&e);
	}
}

/* switch_core_session_execute_application_get_flags() + switch_core_session_exec(). */
static switch_status_t exec_app(switch_core_session_t *s, const char *app, const char *arg, int *pre_answered)
{
	switch_channel_t *c = s->channel;
	switch_application_interface_t *ai;
	char *expanded = NULL;
	const char *v;
	char app_uuid[40];
	static unsigned long app_seq;
	int hungup;

	pthread_mutex_lock(&c->lock);
	hungup = c->hungup;
	pthread_mutex_unlock(&c->lock);

	if (!(ai = iface_get(0, app))) {
		if (hungup) {
			return SWITCH_STATUS_FALSE;
		}
		switch_log_printf(SWITCH_CHANNEL_ID_SESSION, __FILE__, __func__, __LINE__, (const char *) s, SWITCH_LOG_ERROR,
						  "Invalid Application %s\n", app);
		channel_hangup(c, "DESTINATION_OUT_OF_ORDER");
		return SWITCH_STATUS_FALSE;
	}
	if (hungup && !(ai->flags & SAF_ZOMBIE_EXEC)) {
		switch_log_printf(SWITCH_CHANNEL_ID_SESSION, __FILE__, __func__, __LINE__, (const char *) s, SWITCH_LOG_DEBUG,
						  "%s Channel is hungup and application '%s' does not have the zombie_exec flag.\n", c->name, app);
		iface_unprotect(0, ai);
		return SWITCH_STATUS_IGNORE;
	}
	if (!ai->application_function) {
		switch_log_printf(SWITCH_CHANNEL_ID_SESSION, __FILE__, __func__, __LINE__, (const char *) s, SWITCH_LOG_ERROR,
						  "No Function for %s\n", app);
		channel_hangup(c, "DESTINATION_OUT_OF_ORDER");
		iface_unprotect(0, ai);
		return SWITCH_STATUS_FALSE;
	}
	if (!(ai->flags & SAF_SUPPORT_NOMEDIA) && !hungup) {
		pthread_mutex_lock(&c->lock);
		if (!c->pre_answered && !c->answered) {
			if (c->outbound) {
				pthread_mutex_unlock(&c->lock);
				switch_log_printf(SWITCH_CHANNEL_ID_SESSION, __FILE__, __func__, __LINE__, (const char *) s, SWITCH_LOG_WARNING,
								  "Cannot execute app '%s' media required on an outbound channel that does not have media established\n",
								  app);
				iface_unprotect(0, ai);
				return SWITCH_STATUS_FALSE;
			}
			switch_log_printf(SWITCH_CHANNEL_ID_SESSION, __FILE__, __func__, __LINE__, (const char *) s, SWITCH_LOG_DEBUG,
							  "Application %s Requires media! pre_answering channel %s\n", app, c->name);
			c->pre_answered = 1;
			*pre_answered = 1;
			switch_log_printf(SWITCH_CHANNEL_ID_SESSION, __FILE__, __func__, __LINE__, (const char *) s, SWITCH_LOG_NOTICE,
							  "Pre-Answer %s!\n", c->name);
		}
		pthread_mutex_unlock(&c->lock);
	}

	pthread_mutex_lock(&g_serial_lock);
	snprintf(app_uuid, sizeof(app_uuid), "00000000-0000-4000-8000-%012lx", ++app_seq);
	pthread_mutex_unlock(&g_serial_lock);

	if (arg) {
		v = switch_channel_get_variable_dup(c, "app_disable_expand_variables", SWITCH_FALSE, -1);
		if (v && is_true(v)) {
			expanded = xstrdup(arg);
		} else {
			expanded = expand_variables(c, arg);
		}
	}
	switch_log_printf(SWITCH_CHANNEL_ID_LOG_CLEAN, __FILE__, __func__, __LINE__, s->uuid, SWITCH_LOG_INFO,
					  "EXECUTE [depth=0] %s %s(%s)\n", c->name, ai->interface_name, expanded ? expanded : "");
	switch_channel_set_variable_var_check(c, SWITCH_CURRENT_APPLICATION_VARIABLE, ai->interface_name, SWITCH_TRUE);
	switch_channel_set_variable_var_check(c, SWITCH_CURRENT_APPLICATION_DATA_VARIABLE, expanded, SWITCH_FALSE);
	switch_channel_set_variable_var_check(c, SWITCH_CURRENT_APPLICATION_RESPONSE_VARIABLE, NULL, SWITCH_TRUE);
	pthread_mutex_lock(&c->lock);
	free(c->last_app);
	free(c->last_arg);
	c->last_app = xstrdup(ai->interface_name);
	c->last_arg = expanded ? xstrdup(expanded) : NULL;
	pthread_mutex_unlock(&c->lock);
	fire_execute_event(s, SWITCH_EVENT_CHANNEL_EXECUTE, ai->interface_name, expanded, app_uuid);

	ai->application_function(s, expanded);

	fire_execute_event(s, SWITCH_EVENT_CHANNEL_EXECUTE_COMPLETE, ai->interface_name, expanded, app_uuid);
	free(expanded);
	iface_unprotect(0, ai);
	return SWITCH_STATUS_SUCCESS;
}

typedef struct app_job {
	unsigned long id;
	switch_core_session_t *session;
	char *uuid;
	char *app;
	char *data;
	switch_status_t status;
	int pre_answered;
	int64_t started_us, finished_us;
	pthread_t thread;
	struct app_job *next;
} app_job_t;

static pthread_mutex_t g_jobs_lock = PTHREAD_MUTEX_INITIALIZER;
static app_job_t *g_jobs, **g_jobs_tail = &g_jobs;
static unsigned long g_job_seq;

static void *app_thread(void *arg)
{
	app_job_t *j = arg;
	pthread_mutex_lock(&j->session->exec_lock);
	j->started_us = now_us();
	j->status = exec_app(j->session, j->app, j->data, &j->pre_answered);
	j->finished_us = now_us();
	pthread_mutex_unlock(&j->session->exec_lock);
	session_put(j->session);
	return NULL;
}

static app_job_t *start_app(switch_core_session_t *s, const char *app, const char *data)
{
	app_job_t *j = xcalloc(sizeof(*j));
	pthread_attr_t attr;
	j->session = s; /* the caller's reference passes to the job */
	j->uuid = xstrdup(s->uuid);
	j->app = xstrdup(app);
	j->data = data ? xstrdup(data) : NULL;
	pthread_mutex_lock(&g_jobs_lock);
	j->id = ++g_job_seq;
	pthread_mutex_unlock(&g_jobs_lock);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 240 * 1024); /* SWITCH_THREAD_STACKSIZE */
	if (pthread_create(&j->thread, &attr, app_thread, j) != 0) {
		/* no thread: run inline rather than fail */
		app_thread(j);
		j->thread = pthread_self();
	}
	pthread_attr_destroy(&attr);
	return j;
}

static void job_free(app_job_t *j)
{
	free(j->uuid);
	free(j->app);
	free(j->data);
	free(j);
}

static void job_report(app_job_t *j, sbuf_t *out, int with_id)
{
	if (with_id) {
		sb_printf(out, "job %lu ", j->id);
		sb_escaped(out, j->uuid);
		sb_puts(out, " ");
		sb_escaped(out, j->app);
		sb_puts(out, " ");
	}
	sb_printf(out, "app_status %s%s elapsed_ms %lld\n", status_name(j->status), j->pre_answered ? " pre_answered" : "",
			  (long long) ((j->finished_us - j->started_us) / 1000));
}

static void wait_all_jobs(sbuf_t *out)
{
	app_job_t *list, *j, *n;
	unsigned long count = 0;
	pthread_mutex_lock(&g_jobs_lock);
	list = g_jobs;
	g_jobs = NULL;
	g_jobs_tail = &g_jobs;
	pthread_mutex_unlock(&g_jobs_lock);
	for (j = list; j; j = n) {
		n = j->next;
		if (!pthread_equal(j->thread, pthread_self())) {
			pthread_join(j->thread, NULL);
		}
		if (out) {
			job_report(j, out, 1);
		}
		count++;
		job_free(j);
	}
	if (out) {
		sb_printf(out, "jobs %lu\n", count);
	}
}

static void set_var_time(switch_channel_t *c, const char *name, int64_t us, int stamp)
{
	char buf[80];
	if (stamp) {
		time_t t = (time_t) (us / 1000000);
		struct tm tm;
		if (!us) {
			return;
		}
		localtime_r(&t, &tm);
		strftime(buf, sizeof(buf), "%Y-%m-%d %T", &tm);
	} else {
		snprintf(buf, sizeof(buf), "%lld", (long long) us);
	}
	switch_event_add_header_string(c->variables, SWITCH_STACK_BOTTOM, name, buf);
}

/* The main variables of switch_channel_set_timestamps(), set before CHANNEL_HANGUP_COMPLETE. */
static void channel_set_timestamps(switch_channel_t *c)
{
	int64_t cr = c->created_us, an = c->answered_us, hu = c->hangup_us;
	const char *cid = c->profile[PF_CALLER_ID_NUMBER];
	if (c->last_app) {
		switch_event_add_header_string(c->variables, SWITCH_STACK_BOTTOM, "last_app", c->last_app);
	}
	if (c->last_arg) {
		switch_event_add_header_string(c->variables, SWITCH_STACK_BOTTOM, "last_arg", c->last_arg);
	}
	if (!zstr(c->profile[PF_CALLER_ID_NAME])) {
		char *v = xasprintf("\"%s\" <%s>", c->profile[PF_CALLER_ID_NAME], cid ? cid : "");
		switch_event_add_header_string(c->variables, SWITCH_STACK_BOTTOM, "caller_id", v);
		free(v);
	} else if (cid) {
		switch_event_add_header_string(c->variables, SWITCH_STACK_BOTTOM, "caller_id", cid);
	}
	set_var_time(c, "start_stamp", cr, 1);
	set_var_time(c, "answer_stamp", an, 1);
	set_var_time(c, "end_stamp", hu, 1);
	set_var_time(c, "start_epoch", cr / 1000000, 0);
	set_var_time(c, "start_uepoch", cr, 0);
	set_var_time(c, "answer_epoch", an / 1000000, 0);
	set_var_time(c, "answer_uepoch", an, 0);
	set_var_time(c, "end_epoch", hu / 1000000, 0);
	set_var_time(c, "end_uepoch", hu, 0);
	set_var_time(c, "duration", hu / 1000000 - cr / 1000000, 0);
	set_var_time(c, "billsec", an ? hu / 1000000 - an / 1000000 : 0, 0);
	set_var_time(c, "mduration", (hu - cr) / 1000, 0);
	set_var_time(c, "billmsec", an ? (hu - an) / 1000 : 0, 0);
}

/* answer: mark answered, like switch_channel_perform_mark_answered(), and fire CHANNEL_ANSWER. */
static int cmd_answer(const char *uuid, const char **err)
{
	switch_core_session_t *s = session_get(uuid);
	switch_event_t *e;
	int fire = 0;
	if (!s) {
		*err = "no such session";
		return 0;
	}
	pthread_mutex_lock(&s->channel->lock);
	if (s->channel->hungup) {
		*err = "channel is hung up";
	} else if (!s->channel->answered) {
		s->channel->answered = 1;
		s->channel->answered_us = now_us();
		switch_log_printf(SWITCH_CHANNEL_ID_LOG, __FILE__, __func__, __LINE__, s->uuid, SWITCH_LOG_NOTICE,
						  "Channel [%s] has been answered\n", s->channel->name);
		fire = 1;
	}
	pthread_mutex_unlock(&s->channel->lock);
	if (fire && SHIM_EVENT_CREATE(&e, SWITCH_EVENT_CHANNEL_ANSWER) == SWITCH_STATUS_SUCCESS) {
		channel_event_set_data(s->channel, e);
		SHIM_FIRE(&e);
	}
	session_put(s);
	return *err == NULL;
}

/* Hang up, wait for the session's applications, fire CHANNEL_HANGUP_COMPLETE, destroy. */
static void session_hangup_and_destroy(switch_core_session_t *s, const char *cause)
{
	switch_event_t *e;
	channel_hangup(s->channel, cause);
	pthread_mutex_lock(&g_sess_lock);
	while (s->refs > 1) {
		pthread_cond_wait(&g_sess_cond, &g_sess_lock);
	}
	pthread_mutex_unlock(&g_sess_lock);

	pthread_mutex_lock(&s->channel->lock);
	s->channel->state = CS_REPORTING;
	switch_event_add_header_string(s->channel->variables, SWITCH_STACK_BOTTOM, "hangup_cause", s->channel->hangup_cause);
	channel_set_timestamps(s->channel);
	pthread_mutex_unlock(&s->channel->lock);
	if (SHIM_EVENT_CREATE(&e, SWITCH_EVENT_CHANNEL_HANGUP_COMPLETE) == SWITCH_STATUS_SUCCESS) {
		channel_event_set_data(s->channel, e);
		SHIM_FIRE(&e);
	}
	session_destroy(s);
}

/* ------------------------------------------------------------------------------------------ */
/* Command parsing                                                                             */
/* ------------------------------------------------------------------------------------------ */

static int hexval(int c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

/* One escape at p (after the backslash); appends to b; returns chars consumed, or -1. */
static int unescape_one(const char *p, sbuf_t *b)
{
	char ch;
	switch (*p) {
	case 'x': {
		int h = hexval((unsigned char) p[1]), l = h >= 0 ? hexval((unsigned char) p[2]) : -1;
		if (h < 0 || l < 0 || (h == 0 && l == 0)) {
			return -1; /* \x00 cannot be carried in a C string */
		}
		ch = (char) (h * 16 + l);
		sb_add(b, &ch, 1);
		return 3;
	}
	case 'n':
		sb_add(b, "\n", 1);
		return 1;
	case 't':
		sb_add(b, "\t", 1);
		return 1;
	case 'r':
		sb_add(b, "\r", 1);
		return 1;
	case '\\':
	case '"':
	case '\'':
	case ' ':
	case '$':
		sb_add(b, p, 1);
		return 1;
	default:
		return -1;
	}
}

/* C-style unescaping of a whole string (the "esc" prefix). NULL on a bad escape. */
static char *unescape_all(const char *s)
{
	sbuf_t b = { 0 };
	while (*s) {
		if (*s == '\\') {
			int n = unescape_one(s + 1, &b);
			if (n < 0) {
				free(b.data);
				return NULL;
			}
			s += 1 + n;
		} else {
			sb_add(&b, s, 1);
			s++;
		}
	}
	return b.data ? b.data : xstrdup("");
}

/*
 * Shell-like words: whitespace separates, "..." and '...' quote, backslash escapes (\xNN, \n, \t,
 * \r, \\, \", \', \ , \$) outside single quotes. Returns the count, or -1 on a syntax error.
 */
static int tokenize(const char *s, char ***out)
{
	char **v = NULL;
	int n = 0;
	while (*s) {
		sbuf_t b = { 0 };
		int have = 0;
		char q = 0;
		while (*s == ' ' || *s == '\t') {
			s++;
		}
		if (!*s) {
			break;
		}
		while (*s && (q || (*s != ' ' && *s != '\t'))) {
			if (q == '\'') {
				if (*s == '\'') {
					q = 0;
				} else {
					sb_add(&b, s, 1);
				}
				s++;
			} else if (*s == '\\') {
				int k = unescape_one(s + 1, &b);
				if (k < 0) {
					goto bad;
				}
				s += 1 + k;
			} else if (q == '"') {
				if (*s == '"') {
					q = 0;
				} else {
					sb_add(&b, s, 1);
				}
				s++;
			} else if (*s == '"' || *s == '\'') {
				q = *s++;
			} else {
				sb_add(&b, s, 1);
				s++;
			}
			have = 1;
		}
		if (q) {
			goto bad;
		}
		(void) have;
		v = realloc(v, sizeof(char *) * (size_t) (n + 2));
		if (!v) {
			abort();
		}
		v[n++] = b.data ? b.data : xstrdup("");
		v[n] = NULL;
		continue;
	bad:
		free(b.data);
		while (n > 0) {
			free(v[--n]);
		}
		free(v);
		*out = NULL;
		return -1;
	}
	*out = v;
	return n;
}

static void free_words(char **v, int n)
{
	int i;
	for (i = 0; i < n; i++) {
		free(v[i]);
	}
	free(v);
}

/* Up to `max` whitespace-separated words, taken as they are (no quotes, no escapes). */
static int raw_words(const char *s, int max, char ***out)
{
	char **v = xcalloc(sizeof(char *) * (size_t) (max + 1));
	int n = 0;
	while (n < max) {
		const char *b;
		while (*s == ' ' || *s == '\t') {
			s++;
		}
		if (!*s) {
			break;
		}
		b = s;
		while (*s && *s != ' ' && *s != '\t') {
			s++;
		}
		v[n++] = strndup(b, (size_t) (s - b));
	}
	*out = v;
	return n;
}

/* The raw text after the first `skip` whitespace-separated words of line. */
static const char *rest_after(const char *line, int skip)
{
	const char *p = line;
	while (skip-- > 0) {
		while (*p == ' ' || *p == '\t') {
			p++;
		}
		while (*p && *p != ' ' && *p != '\t') {
			p++;
		}
	}
	if (*p == ' ' || *p == '\t') {
		p++; /* one separator; the rest is passed as it is */
	}
	return p;
}

/* ------------------------------------------------------------------------------------------ */
/* Commands                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static int cmd_call(char **w, int n, sbuf_t *out, const char **err)
{
	switch_core_session_t *s, *x;
	int i;
	if (n < 2) {
		*err = "usage: call <uuid> [var=value ...]";
		return 0;
	}
	if ((x = session_get(w[1]))) {
		session_put(x);
		*err = "session exists";
		return 0;
	}
	s = session_create(w[1]);
	/* switch_channel_set_direction() sets the "direction" variable */
	switch_event_add_header_string(s->channel->variables, SWITCH_STACK_BOTTOM, "direction", "inbound");
	for (i = 2; i < n; i++) {
		char *eq = strchr(w[i], '=');
		int pf;
		if (!eq || eq == w[i]) {
			session_destroy(s);
			*err = "expected var=value";
			return 0;
		}
		*eq = '\0';
		if ((pf = profile_field(w[i])) >= 0) {
			free(s->channel->profile[pf]);
			s->channel->profile[pf] = xstrdup(eq + 1);
		} else if (!strcmp(w[i], "direction")) {
			s->channel->outbound = !strcmp(eq + 1, "outbound");
			switch_event_add_header_string(s->channel->variables, SWITCH_STACK_BOTTOM, "direction",
										   s->channel->outbound ? "outbound" : "inbound");
		} else {
			/* set like a variable from the endpoint: no var_check (the test decides what it injects) */
			switch_event_add_header_string(s->channel->variables, SWITCH_STACK_BOTTOM, w[i], eq + 1);
		}
		*eq = '=';
	}
	if (!s->channel->profile[PF_ORIG_CALLER_ID_NAME] && s->channel->profile[PF_CALLER_ID_NAME]) {
		s->channel->profile[PF_ORIG_CALLER_ID_NAME] = xstrdup(s->channel->profile[PF_CALLER_ID_NAME]);
	}
	if (!s->channel->profile[PF_ORIG_CALLER_ID_NUMBER] && s->channel->profile[PF_CALLER_ID_NUMBER]) {
		s->channel->profile[PF_ORIG_CALLER_ID_NUMBER] = xstrdup(s->channel->profile[PF_CALLER_ID_NUMBER]);
	}
	s->channel->name = s->channel->profile[PF_CHAN_NAME] ? xstrdup(s->channel->profile[PF_CHAN_NAME])
														 : xasprintf("shim/%s", s->uuid);
	if (!s->channel->profile[PF_CHAN_NAME]) {
		s->channel->profile[PF_CHAN_NAME] = xstrdup(s->channel->name);
	}
	pthread_mutex_lock(&g_sess_lock);
	s->next = g_sessions;
	g_sessions = s;
	pthread_mutex_unlock(&g_sess_lock);
	sb_puts(out, "channel ");
	sb_escaped(out, s->channel->name);
	sb_puts(out, "\n");
	return 1;
}

static int cmd_vars(const char *uuid, sbuf_t *out, const char **err)
{
	switch_core_session_t *s = session_get(uuid);
	switch_event_header_t *hp;
	if (!s) {
		*err = "no such session";
		return 0;
	}
	pthread_mutex_lock(&s->channel->lock);
	for (hp = s->channel->variables->headers; hp; hp = hp->next) {
		sb_puts(out, "var ");
		sb_escaped(out, hp->name);
		sb_puts(out, "=");
		sb_escaped(out, hp->value);
		sb_puts(out, "\n");
	}
	pthread_mutex_unlock(&s->channel->lock);
	session_put(s);
	return 1;
}

static int cmd_hangup(const char *uuid, const char *cause, const char **err)
{
	switch_core_session_t **pp, *s = NULL;
	pthread_mutex_lock(&g_sess_lock);
	for (pp = &g_sessions; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->uuid, uuid)) {
			s = *pp;
			*pp = s->next; /* no new applications from now on */
			break;
		}
	}
	pthread_mutex_unlock(&g_sess_lock);
	if (!s) {
		*err = "no such session";
		return 0;
	}
	session_hangup_and_destroy(s, cause ? cause : "NORMAL_CLEARING");
	return 1;
}

/* switch_api_execute and the core's call-control commands (a room of their own). */
#include "core_commands.c"

static int cmd_fire(char **w, int n, const char **err)
{
	switch_event_types_t id;
	switch_event_t *e;
	int i = 2;
	const char *sub = NULL;
	if (n < 2 || !event_id_by_name(w[1], &id)) {
		*err = "usage: fire <EVENT_NAME> [subclass] [Header=Value ...]";
		return 0;
	}
	if (id == SWITCH_EVENT_CUSTOM) {
		if (n < 3) {
			*err = "CUSTOM needs a subclass";
			return 0;
		}
		sub = w[2];
		i = 3;
	}
	if (switch_event_create_subclass_detailed(__FILE__, __func__, __LINE__, &e, id, sub) != SWITCH_STATUS_SUCCESS) {
		*err = "cannot create event";
		return 0;
	}
	for (; i < n; i++) {
		char *eq = strchr(w[i], '=');
		if (!eq) {
			switch_event_destroy(&e);
			*err = "expected Header=Value";
			return 0;
		}
		*eq = '\0';
		switch_event_add_header_string(e, SWITCH_STACK_BOTTOM, w[i], eq + 1);
		*eq = '=';
	}
	SHIM_FIRE(&e);
	return 1;
}

static void cmd_bindings(sbuf_t *out)
{
	int e, count = 0, nmods = 0, k;
	switch_event_node_t *n;
	shim_module_t *m;
	Dl_info info;
	struct {
		void *base;
		char *name;
	} mods[64];

	/* module names first: g_mod_lock is never taken while holding the binding lock */
	pthread_mutex_lock(&g_mod_lock);
	for (m = g_modules; m && nmods < 64; m = m->next) {
		mods[nmods].base = m->base;
		mods[nmods++].name = xstrdup(m->name);
	}
	pthread_mutex_unlock(&g_mod_lock);

	pthread_rwlock_rdlock(&g_bind_rw);
	for (e = 0; e <= SWITCH_EVENT_ALL; e++) {
		for (n = g_nodes[e]; n; n = n->next) {
			const char *owner = "-";
			if (dladdr((void *) n->callback, &info) && info.dli_fbase) {
				for (k = 0; k < nmods; k++) {
					if (mods[k].base == info.dli_fbase) {
						owner = mods[k].name;
					}
				}
			}
			sb_puts(out, "binding id=");
			sb_escaped(out, n->id);
			sb_printf(out, " event=%s subclass=", event_name(n->event_id));
			sb_escaped(out, n->subclass_name ? n->subclass_name : "-");
			sb_printf(out, " module=%s%s\n", n->dangling ? "(unloaded)" : owner, "");
			count++;
		}
	}
	pthread_rwlock_unlock(&g_bind_rw);
	for (k = 0; k < nmods; k++) {
		free(mods[k].name);
	}
	sb_printf(out, "bindings %d\n", count);
}

static void summary(sbuf_t *out)
{
	int i, e, left = 0, subs = 0;
	switch_event_node_t *n;
	subclass_res_t *r;

	sb_puts(out, "summary logs");
	pthread_mutex_lock(&g_log_lock);
	for (i = 0; i < LOG_BUCKETS; i++) {
		sb_printf(out, " %s=%lu", LOG_BUCKET_NAMES[i], g_log_counts[i]);
	}
	pthread_mutex_unlock(&g_log_lock);
	sb_puts(out, "\n");
	pthread_mutex_lock(&g_q_lock);
	sb_printf(out, "summary events_fired total=%lu", g_fired_total);
	for (e = 0; e <= SWITCH_EVENT_ALL; e++) {
		if (g_fired[e]) {
			sb_printf(out, " %s=%lu", event_name((switch_event_types_t) e), g_fired[e]);
		}
	}
	sb_printf(out, "\nsummary handler_calls %lu\n", g_delivered_calls);
	pthread_mutex_unlock(&g_q_lock);
	pthread_rwlock_rdlock(&g_bind_rw);
	for (e = 0; e <= SWITCH_EVENT_ALL; e++) {
		for (n = g_nodes[e]; n; n = n->next) {
			left++;
			sb_puts(out, "summary binding_left id=");
			sb_escaped(out, n->id);
			sb_printf(out, " event=%s subclass=", event_name(n->event_id));
			sb_escaped(out, n->subclass_name ? n->subclass_name : "-");
			sb_puts(out, n->dangling ? " dangling\n" : "\n");
		}
	}
	pthread_rwlock_unlock(&g_bind_rw);
	sb_printf(out, "summary bindings_left %d\n", left);
	pthread_mutex_lock(&g_subclass_lock);
	for (r = g_subclasses; r; r = r->next) {
		if (!r->bind) {
			subs++;
			sb_puts(out, "summary subclass_left owner=");
			sb_escaped(out, r->owner);
			sb_puts(out, " name=");
			sb_escaped(out, r->name);
			sb_puts(out, "\n");
		}
	}
	pthread_mutex_unlock(&g_subclass_lock);
	sb_printf(out, "summary subclasses_left %d\n", subs);
}

/* Process shutdown, in the core's order: hang up calls, stop modules (no dlclose), drain events. */
static void shutdown_all(sbuf_t *out)
{
	switch_core_session_t *s;
	shim_module_t *m;
	wait_all_jobs(out);
	for (;;) {
		pthread_mutex_lock(&g_sess_lock);
		s = g_sessions;
		if (s) {
			g_sessions = s->next;
		}
		pthread_mutex_unlock(&g_sess_lock);
		if (!s) {
			break;
		}
		session_hangup_and_destroy(s, "SYSTEM_SHUTDOWN");
	}
	events_wait_idle();
	for (;;) {
		const char *err = NULL;
		char *name;
		pthread_mutex_lock(&g_mod_lock);
		m = g_modules;
		name = m ? xstrdup(m->name) : NULL;
		if (m && m->perm) {
			/* the core skips modules that are not unloadable: no shutdown() for them */
			g_modules = m->next;
			module_unregister(m);
		}
		pthread_mutex_unlock(&g_mod_lock);
		if (!name) {
			break;
		}
		sb_puts(out, "shutdown_module ");
		sb_escaped(out, name);
		if (m->perm) {
			/* kept (still reachable): its code may run until the process ends */
			sb_puts(out, " skipped (NOUNLOAD)\n");
			m->next = g_perm_modules;
			g_perm_modules = m;
		} else {
			sb_puts(out, "\n");
			module_unload(name, 1, 0, &err, out);
		}
		free(name);
	}
	events_wait_idle();
}

static int g_exit;

/* switch_xml_reload(): read the files again, then RELOADXML. */
static void reloadxml(sbuf_t *out, const char *reply)
{
	switch_event_t *e;
	xml_registry_load();
	SHIM_LOG(SWITCH_LOG_INFO, "Reloading XML\n");
	if (SHIM_EVENT_CREATE(&e, SWITCH_EVENT_RELOADXML) == SWITCH_STATUS_SUCCESS) {
		SHIM_FIRE(&e);
	}
	sb_puts(out, reply);
}

/* The unload command, with the force path's warnings. */
static int unload_cmd(const char *name, int force, const char **err, sbuf_t *out)
{
	switch_status_t st;
	if (force) {
		SHIM_LOG(SWITCH_LOG_WARNING, "Spin the barrel and pull the trigger.......!\n");
	}
	st = module_unload(name, force, 1, err, out);
	if (force) {
		/* the core then sleeps a second; the shim does not */
		SHIM_LOG(SWITCH_LOG_WARNING, "PHEW!\n");
	}
	return st == SWITCH_STATUS_SUCCESS;
}

/* Run one command line; returns the frame text. */
static void run_command(const char *raw_line)
{
	sbuf_t out = { 0 };
	const char *err = NULL;
	int ok = 1;
	char **w = NULL;
	int n;
	char *unesc = NULL;
	const char *line = raw_line;
	sbuf_t frame = { 0 };

	while (*line == ' ' || *line == '\t') {
		line++;
	}
	if (!*line || *line == '#') {
		return;
	}
	sb_puts(&frame, ">>> ");
	sb_escaped(&frame, line);
	sb_puts(&frame, "\n");
	out_block(frame.data);
	free(frame.data);

	if (!strncmp(line, "esc ", 4)) {
		if (!(unesc = unescape_all(line + 4))) {
			ok = 0;
			err = "bad escape";
			goto done;
		}
		line = unesc;
	}

	{
		/* api, app, app_async and echo pass their tail as it is; only their first words are split */
		static const struct {
			const char *name;
			int words;
		} raw[] = { { "api", 2 }, { "app", 3 }, { "app_async", 3 }, { "echo", 1 } };
		size_t k, l = strcspn(line, " \t");
		n = -2;
		for (k = 0; k < sizeof(raw) / sizeof(raw[0]); k++) {
			if (l == strlen(raw[k].name) && !strncmp(line, raw[k].name, l)) {
				n = raw_words(line, raw[k].words, &w);
				break;
			}
		}
		if (n == -2) {
			n = tokenize(line, &w);
		}
	}
	if (n < 0) {
		ok = 0;
		err = "syntax error (unbalanced quote or bad escape)";
		goto done;
	}
	if (n == 0) {
		goto done;
	}

	if (!strcmp(w[0], "load")) {
		if (n != 3) {
			ok = 0, err = "usage: load <path.so> <modname>";
		} else if (!module_load(w[1], w[2], &err, &out)) {
			ok = 0;
		}
	} else if (!strcmp(w[0], "unload")) {
		int force = n == 3 && !strcmp(w[1], "-f");
		if (n != 2 + force) {
			ok = 0, err = "usage: unload [-f] <modname>";
		} else {
			ok = unload_cmd(force ? w[2] : w[1], force, &err, &out);
		}
	} else if (!strcmp(w[0], "reload")) {
		/* mod_commands' reload: reloadxml, unload, then load whatever the unload said */
		int force = n == 3 && !strcmp(w[1], "-f");
		const char *name = force ? w[2] : w[1];
		if (n != 2 + force) {
			ok = 0, err = "usage: reload [-f] <modname>";
		} else {
			known_path_t *k;
			const char *uerr = NULL;
			char *path = NULL;
			reloadxml(&out, "+OK Reloading XML\n");
			if (!unload_cmd(name, force, &uerr, &out)) {
				ok = 0;
				err = uerr;
				sb_printf(&out, "-ERR unloading module [%s]\n", uerr);
			}
			for (k = g_known_paths; k; k = k->next) {
				if (!strcmp(k->name, name)) {
					path = xstrdup(k->path);
				}
			}
			if (!path) {
				ok = 0;
				err = "no path known for this module";
			} else if (!module_load(path, name, ok ? &err : &uerr, &out)) {
				ok = 0;
			}
			free(path);
		}
	} else if (!strcmp(w[0], "api")) {
		if (n < 2) {
			ok = 0, err = "usage: api <cmd> [args]";
		} else {
			/* the console splits at the first space; switch_api_execute strips both parts */
			const char *p = rest_after(line, 1);
			const char *sp = strpbrk(p, " \t");
			char *cmd = sp ? strndup(p, (size_t) (sp - p)) : xstrdup(p);
			run_api(cmd, sp ? sp + 1 : NULL, &out);
			free(cmd);
		}
	} else if (!strcmp(w[0], "call")) {
		ok = cmd_call(w, n, &out, &err);
	} else if (!strcmp(w[0], "app") || !strcmp(w[0], "app_async")) {
		switch_core_session_t *s;
		if (n < 3) {
			ok = 0, err = "usage: app|app_async <uuid> <appname> [data]";
		} else if (!(s = session_get(w[1]))) {
			ok = 0, err = "no such session";
		} else {
			const char *tail = rest_after(line, 3);
			const char *data = *tail ? tail : NULL;
			app_job_t *j = start_app(s, w[2], data);
			if (!strcmp(w[0], "app")) {
				if (!pthread_equal(j->thread, pthread_self())) {
					pthread_join(j->thread, NULL);
				}
				job_report(j, &out, 0);
				sb_puts(&out, "ok\n");
				job_free(j);
			} else {
				sb_printf(&out, "job %lu\n", j->id);
				pthread_mutex_lock(&g_jobs_lock);
				*g_jobs_tail = j;
				g_jobs_tail = &j->next;
				pthread_mutex_unlock(&g_jobs_lock);
			}
		}
	} else if (!strcmp(w[0], "wait_all")) {
		wait_all_jobs(&out);
	} else if (!strcmp(w[0], "vars")) {
		if (n != 2) {
			ok = 0, err = "usage: vars <uuid>";
		} else {
			ok = cmd_vars(w[1], &out, &err);
		}
	} else if (!strcmp(w[0], "hangup")) {
		if (n < 2 || n > 3) {
			ok = 0, err = "usage: hangup <uuid> [cause]";
		} else {
			ok = cmd_hangup(w[1], n == 3 ? w[2] : NULL, &err);
		}
	} else if (!strcmp(w[0], "bridge")) {
		if (n != 3) {
			ok = 0, err = "usage: bridge <uuid> <other uuid>";
		} else {
			ok = cmd_bridge(w[1], w[2], &err);
		}
	} else if (!strcmp(w[0], "ring")) {
		if (n != 2) {
			ok = 0, err = "usage: ring <uuid>";
		} else {
			ok = cmd_ring(w[1], &err);
		}
	} else if (!strcmp(w[0], "answer")) {
		if (n != 2) {
			ok = 0, err = "usage: answer <uuid>";
		} else {
			ok = cmd_answer(w[1], &err);
		}
	} else if (!strcmp(w[0], "reloadxml")) {
		reloadxml(&out, "+OK [Success]\n");
	} else if (!strcmp(w[0], "fire")) {
		ok = cmd_fire(w, n, &err);
	} else if (!strcmp(w[0], "wait_events")) {
		events_wait_idle();
	} else if (!strcmp(w[0], "bindings")) {
		cmd_bindings(&out);
	} else if (!strcmp(w[0], "sleep")) {
		if (n != 2) {
			ok = 0, err = "usage: sleep <ms>";
		} else {
			usleep((useconds_t) (strtoul(w[1], NULL, 10) * 1000));
		}
	} else if (!strcmp(w[0], "echo")) {
		sb_puts(&out, "echo ");
		sb_escaped(&out, rest_after(line, 1));
		sb_puts(&out, "\n");
	} else if (!strcmp(w[0], "exit")) {
		g_exit = 1;
		shutdown_all(&out);
		summary(&out);
	} else {
		ok = 0;
		err = "unknown command";
	}

done:
	if (w) {
		free_words(w, n);
	}
	free(unesc);
	if (ok) {
		sb_puts(&out, "<<< OK\n");
	} else {
		sb_puts(&out, "<<< ERR ");
		sb_escaped(&out, err ? err : "failed");
		sb_puts(&out, "\n");
	}
	out_block(out.data);
	free(out.data);
}

static void usage(void)
{
	fprintf(stderr, "usage: host-shim --conf-dir DIR [--script FILE] [--log-stdout] [--events-brief] [--debug-level N]\n");
}

int main(int argc, char **argv)
{
	const char *script = NULL;
	FILE *in = stdin;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--conf-dir") && i + 1 < argc) {
			g_conf_dir = xstrdup(argv[++i]);
		} else if (!strcmp(argv[i], "--script") && i + 1 < argc) {
			script = argv[++i];
		} else if (!strcmp(argv[i], "--log-stdout")) {
			g_log_stdout = 1;
		} else if (!strcmp(argv[i], "--events-brief")) {
			g_event_headers = 0;
		} else if (!strcmp(argv[i], "--debug-level") && i + 1 < argc) {
			g_debug_level = atoi(argv[++i]);
		} else {
			usage();
			return 2;
		}
	}
	if (!g_conf_dir) {
		usage();
		return 2;
	}
	if (script && !(in = fopen(script, "r"))) {
		fprintf(stderr, "host-shim: cannot open %s: %s\n", script, strerror(errno));
		return 2;
	}
	/* As FreeSWITCH does at startup: a write to a closed socket is an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (gethostname(g_hostname, sizeof(g_hostname) - 1) != 0) {
		strcpy(g_hostname, "localhost");
	}
	snprintf(g_core_uuid, sizeof(g_core_uuid), "00000000-0000-4000-8000-%012lx", (unsigned long) getpid());
	pthread_create(&g_dispatcher, NULL, dispatcher_main, NULL);
	xml_registry_load();

	while (!g_exit && (len = getline(&line, &cap, in)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
			line[--len] = '\0';
		}
		run_command(line);
	}
	if (!g_exit) {
		run_command("exit");
	}
	free(line);
	if (in != stdin) {
		fclose(in);
	}

	pthread_mutex_lock(&g_q_lock);
	g_q_stop = 1;
	pthread_cond_signal(&g_q_cond);
	pthread_mutex_unlock(&g_q_lock);
	pthread_join(g_dispatcher, NULL);

	{
		xml_file_t *f, *nf;
		known_path_t *k, *nk;
		for (f = g_xml_files; f; f = nf) {
			nf = f->next;
			free(f->path);
			free(f->text);
			free(f);
		}
		for (k = g_known_paths; k; k = nk) {
			nk = k->next;
			free(k->name);
			free(k->path);
			free(k);
		}
	}
	free(g_conf_dir);
	return 0;
}
