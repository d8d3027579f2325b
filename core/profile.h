/* profile.h - opt-in timing of what confit spends its time on.
 *
 * While a profile is running, every op dispatch (cf_op), every backward rule, the gradient
 * accumulation of a backward pass, each optimizer step and the stages of the generators are
 * "regions". Only outermost regions are timed (an op called from inside another op's kernel or
 * backward rule counts towards that outer region), so the rows add up to the profiled work with
 * no double counting. Each region is keyed by (name, phase): the phase is a label, "fwd" unless
 * set otherwise; cf_backward runs under "bwd", optimizer steps under "opt", generation under
 * "gen.prefill" / "gen.decode" (and a script may set its own with cf_prof_set_phase).
 *
 * Two clocks per region: host seconds (CLOCK_MONOTONIC between entry and exit: for CPU work the
 * real time, for device work the launch cost plus any wait) and, when a device timer is
 * registered and the device is in use, device seconds (events queued on the device stream at
 * entry and exit, read back at cf_prof_stop; for device work this is the time the work occupied
 * the stream, including idle gaps while the host was still launching it).
 *
 * Off by default; the cost when off is one branch per op. Single-threaded like op dispatch.
 */
#ifndef CF_PROFILE_H
#define CF_PROFILE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
  const char *name;  /* region name (an op name, "accumulate", "adamw", "gen.lm_head", ...) */
  const char *phase; /* "fwd", "bwd", "opt", "gen.decode", or a label set by the caller */
  int64_t calls;
  double host_s;     /* summed host seconds */
  double device_s;   /* summed device seconds; meaningful only when has_device */
  bool has_device;   /* at least one call was timed on the device */
} cf_prof_row;

/* A device timer, registered by the CUDA layer. record returns NULL when the device is not in
 * use or its stream is being captured (the region is then host-timed only). */
typedef struct {
  void *(*record)(void);                   /* queue an event on the device stream */
  int (*elapsed)(void *a, void *b, double *seconds); /* after the events completed */
  int (*sync)(void);                       /* wait for all queued device work */
  void (*release)(void *ev);
} cf_prof_timer;
void cf_prof_register_timer(const cf_prof_timer *t);

extern bool cf_prof_on; /* read through cf_prof_active() */
static inline bool cf_prof_active(void) { return cf_prof_on; }

/* Starts collecting (clears earlier results); error when already running. */
int cf_prof_start(void);
/* Stops, waits for the device, and returns the rows (a malloc'd array the caller frees, sorted
 * by device-or-host seconds, largest first). Error when not running. */
int cf_prof_stop(cf_prof_row **rows, int *nrows);

/* Enters a region; returns a token for cf_prof_pop (negative when inactive or nested).
 * name and the current phase must outlive the profile (string literals, op names). */
int cf_prof_push(const char *name);
void cf_prof_pop(int token);
/* Stages of a pipeline: leaves the region *token names (if any) and enters `name` (NULL: enters
 * nothing). Start with *token = -1. */
static inline void cf_prof_next(int *token, const char *name) {
  cf_prof_pop(*token);
  *token = name ? cf_prof_push(name) : -1;
}
/* Sets the phase label for the regions entered from now on; returns the previous one. Names
 * given here are copied (up to 63 bytes) so a caller may pass a temporary string. */
const char *cf_prof_set_phase(const char *phase);

#endif
