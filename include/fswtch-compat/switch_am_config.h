/*
 * The fswtch-src crate ships switch_am_config.h.in but not the configured header. FreeSWITCH's
 * configure writes this file; these are the values it writes on x86_64 Linux (LP64, glibc).
 * Used only when building against fswtch-src; an installed FreeSWITCH brings its own.
 */
#ifndef SWITCH_AM_CONFIG_H
#define SWITCH_AM_CONFIG_H

#define SWITCH_INT_16  short
#define SWITCH_INT_32  int
#define SWITCH_INT_64  long
#define SWITCH_SIZE_T  size_t
#define SWITCH_SSIZE_T ssize_t
#define SWITCH_SIZEOF_VOIDP 8
#define SWITCH_PREFIX_DIR "/usr/local/freeswitch"

#define SWITCH_SSIZE_T_FMT "ld"
#define SWITCH_SIZE_T_FMT "ld"
#define SWITCH_INT64_T_FMT "ld"
#define SWITCH_UINT64_T_FMT "lu"

#endif
