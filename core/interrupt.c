/* interrupt.c - the "stop soon" flag (see interrupt.h). */
#include "interrupt.h"
#include <signal.h>

static volatile sig_atomic_t flag = 0;

void cf_interrupt_request(void) { flag = 1; }
int cf_interrupt_pending(void) { return flag != 0; }
void cf_interrupt_clear(void) { flag = 0; }
