/*
 * What mod_natterbox_sf needs from FreeSWITCH. bindgen reads this file against the configured
 * FreeSWITCH headers (build.rs). Only functions exported by both FreeSWITCH 1.10 and the newer
 * headers of the fswtch-src crate are allowlisted there.
 */
#ifndef NATTERBOX_SF_H
#define NATTERBOX_SF_H

#include <switch.h>

/* SWITCH_API_VERSION is a macro; bindgen sees it as a constant through this. */
static const int NATTERBOX_SWITCH_API_VERSION = SWITCH_API_VERSION;

#endif
