// Diagnostics: formatting of user-facing error messages (see diag.h).
#include "runtime/diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool diag_error(Diag *d, const char *fmt, ...) {
  if (!d || d->set) return false;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->msg, sizeof d->msg, fmt, ap);
  va_end(ap);
  d->set = true;
  return false;
}

bool diag_prefix(Diag *d, const char *fmt, ...) {
  if (!d || !d->set) return false;
  char tail[DIAG_MAX];
  memcpy(tail, d->msg, sizeof tail);
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(d->msg, sizeof d->msg, fmt, ap);
  va_end(ap);
  size_t used = n < 0 ? 0 : (size_t)n < sizeof d->msg ? (size_t)n : sizeof d->msg - 1;
  size_t rest = strlen(tail);
  if (rest > sizeof d->msg - 1 - used) rest = sizeof d->msg - 1 - used;
  memcpy(d->msg + used, tail, rest);
  d->msg[used + rest] = 0;
  return false;
}
