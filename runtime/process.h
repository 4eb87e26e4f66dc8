// Running another program (the C compiler for kiln compile, Python for pytorch_model.bin)
// and waiting for it; its stdout and stderr are this process's.
#ifndef KILN_PROCESS_H
#define KILN_PROCESS_H

#include <stdbool.h>

#include "runtime/diag.h"

// Runs argv (argv[0] looked up on PATH) and waits: its exit status (0 success, 127 when it
// could not be started), or -1 when it could not be forked, waited for or was killed (d says
// which).
int rt_spawn(char *const argv[], Diag *d);

// rt_spawn, with any exit but 0 an error naming the command line.
bool rt_run(char *const argv[], Diag *d);

#endif
