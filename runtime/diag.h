// Diagnostics: how every library function reports a user's mistake.
// A function that can fail on bad input takes a Diag *, fills it with one message that
// names the place (file, JSON path, tensor name) and returns false; the CLI prints it once.
// Broken invariants are asserts, never diagnostics. Library code never calls exit().
#ifndef KILN_DIAG_H
#define KILN_DIAG_H

#include <stdbool.h>

#define DIAG_MAX 2048

typedef struct Diag {
  bool set;
  char msg[DIAG_MAX];
} Diag;

// Records the first error (later ones are ignored) and returns false, so callers can write
// `return diag_error(d, "...")`. A NULL d is allowed and discards the message.
bool diag_error(Diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Prepends context ("models/x.json: ") to an existing message; returns false.
bool diag_prefix(Diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
