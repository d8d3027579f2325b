/* profile.c - the region profiler of profile.h.
 *
 * Outermost regions are appended to a pending list (names, host times, device events); the list
 * is folded into the per-(name, phase) rows when it fills up and at stop, after one device sync,
 * so a long profile holds at most PENDING_MAX events at a time. Phase labels are interned (a
 * small table that lives as long as the process) so rows can keep pointers to them.
 */
#include "profile.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PENDING_MAX 4096
#define PHASES_MAX 64
#define PHASE_LEN 64

bool cf_prof_on = false;

typedef struct {
  const char *name, *phase;
  double h0, h1;
  void *e0, *e1;
} pending;

static cf_prof_timer timer;
static bool have_timer = false;
static pending *pend;
static int npend, depth;
static cf_prof_row *rows;
static int nrows, caprows;
/* "fwd" is interned from the start: rows match phases by pointer, and a phase set back after a
 * backward or a generation (cf_prof_set_phase(old)) is the interned copy. With the literal as the
 * first phase, a profile started before any phase was set had two "fwd" rows for one op. */
static char phases[PHASES_MAX][PHASE_LEN] = {"fwd"};
static int nphases = 1;
static const char *phase = phases[0];

void cf_prof_register_timer(const cf_prof_timer *t) {
  timer = *t;
  have_timer = true;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *intern_phase(const char *p) {
  if (!p || !*p) p = "fwd";
  for (int i = 0; i < nphases; i++)
    if (strncmp(phases[i], p, PHASE_LEN - 1) == 0) return phases[i];
  if (nphases == PHASES_MAX) return "other"; /* a script inventing labels in a loop */
  strncpy(phases[nphases], p, PHASE_LEN - 1);
  phases[nphases][PHASE_LEN - 1] = '\0';
  return phases[nphases++];
}

const char *cf_prof_set_phase(const char *p) {
  const char *old = phase;
  phase = intern_phase(p);
  return old;
}

static cf_prof_row *row_for(const char *name, const char *ph) {
  for (int i = 0; i < nrows; i++)
    if (rows[i].phase == ph && (rows[i].name == name || strcmp(rows[i].name, name) == 0)) return &rows[i];
  if (nrows == caprows) {
    int cap = caprows ? 2 * caprows : 64;
    cf_prof_row *r = realloc(rows, (size_t)cap * sizeof *r);
    if (!r) return NULL;
    rows = r;
    caprows = cap;
  }
  cf_prof_row *r = &rows[nrows++];
  memset(r, 0, sizeof *r);
  r->name = name;
  r->phase = ph;
  return r;
}

/* Folds the pending regions into rows. Returns -1 + message when the device sync failed (the
 * host times are still folded). */
static int flush(void) {
  int rc = 0;
  bool any = false;
  for (int i = 0; i < npend && !any; i++) any = pend[i].e0 || pend[i].e1;
  if (any && timer.sync() != 0) rc = -1;
  for (int i = 0; i < npend; i++) {
    pending *p = &pend[i];
    cf_prof_row *r = row_for(p->name, p->phase); /* NULL when out of memory: the region is dropped */
    if (r) {
      r->calls++;
      r->host_s += p->h1 - p->h0;
      double d;
      if (rc == 0 && p->e0 && p->e1 && timer.elapsed(p->e0, p->e1, &d) == 0) {
        r->device_s += d;
        r->has_device = true;
      }
    }
    if (p->e0) timer.release(p->e0);
    if (p->e1) timer.release(p->e1);
  }
  npend = 0;
  return rc;
}

int cf_prof_start(void) {
  if (cf_prof_on) return CF_ERR("profile: already running (stop it first)");
  if (!pend && !(pend = malloc(PENDING_MAX * sizeof *pend))) return CF_ERR("profile: out of memory");
  npend = 0;
  depth = 0;
  nrows = 0;
  cf_prof_on = true;
  return 0;
}

static double row_key(const cf_prof_row *r) { return r->has_device && r->device_s > r->host_s ? r->device_s : r->host_s; }

static int row_cmp(const void *a, const void *b) {
  double x = row_key(a), y = row_key(b);
  return x < y ? 1 : x > y ? -1 : 0;
}

int cf_prof_stop(cf_prof_row **out, int *nout) {
  *out = NULL;
  *nout = 0;
  if (!cf_prof_on) return CF_ERR("profile: not running (start it first)");
  cf_prof_on = false;
  depth = 0;
  int rc = flush();
  if (rc) return cf_error_prefix("profile: waiting for the device: ");
  cf_prof_row *r = malloc((size_t)(nrows ? nrows : 1) * sizeof *r);
  if (!r) return CF_ERR("profile: out of memory");
  if (nrows) memcpy(r, rows, (size_t)nrows * sizeof *r);
  qsort(r, (size_t)nrows, sizeof *r, row_cmp);
  *out = r;
  *nout = nrows;
  nrows = 0;
  return 0;
}

/* Tokens: -1 inactive (pop does nothing), -2 nested (pop leaves the region), >= 0 an index into
 * the pending list. */
int cf_prof_push(const char *name) {
  if (!cf_prof_on) return -1;
  if (depth++ > 0) return -2;
  if (npend == PENDING_MAX && flush() != 0) cf_error_clear(); /* device error: keep host times */
  pending *p = &pend[npend];
  p->name = name;
  p->phase = phase;
  p->e0 = have_timer ? timer.record() : NULL;
  p->e1 = NULL;
  p->h0 = now();
  p->h1 = p->h0;
  return npend++;
}

void cf_prof_pop(int token) {
  if (token == -1 || !cf_prof_on) return;
  if (depth > 0) depth--;
  if (token < 0 || token >= npend) return;
  pending *p = &pend[token];
  p->h1 = now();
  if (p->e0 && have_timer) p->e1 = timer.record();
}
