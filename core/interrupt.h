/* interrupt.h - a process-wide "stop soon" flag.
 *
 * A signal handler (the REPL's Ctrl-C) sets it; long C loops (generation, training helpers)
 * check it between steps and return early with their partial result and an "interrupted"
 * status. Whoever acts on it clears it.
 */
#ifndef CF_INTERRUPT_H
#define CF_INTERRUPT_H

void cf_interrupt_request(void);   /* async-signal-safe */
int cf_interrupt_pending(void);
void cf_interrupt_clear(void);

#endif
