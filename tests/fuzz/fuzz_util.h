// Shared by the libFuzzer targets: the input split into named parts (so one input can carry
// a model file and its includes, or a vocabulary and texts), and a per-process temporary
// directory for the files a target hands to loaders that read paths.
#ifndef KILN_FUZZ_UTIL_H
#define KILN_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/diag.h"

// An input is parts separated by lines "--- NAME": part 0 has no name (""), each later one
// the NAME of its separator line. data points into the input.
#define FUZZ_SEPARATOR "\n--- "

typedef struct FuzzPart {
  char name[64];  // truncated; "" for part 0
  const uint8_t *data;
  size_t size;
} FuzzPart;

// Splits data into at most max parts (the last one keeps the rest); returns the count (>= 1).
int fuzz_split(const uint8_t *data, size_t size, FuzzPart *parts, int max);

// A copy of a part's bytes with a NUL after them (free it).
char *fuzz_strndup(const FuzzPart *p);

// Whether name is a plain file name: 1-63 of [A-Za-z0-9._-], not "." or "..".
int fuzz_name_ok(const char *name);

// Writes data to NAME in the process's temporary directory (made on first use, removed at
// exit); its path goes to path (cap bytes). Aborts when the file cannot be written: that
// is the harness failing, not kiln.
void fuzz_write(const char *name, const void *data, size_t size, char *path, size_t cap);

// The contract every loader keeps: it succeeds, or fails with a message in d. Aborts (a
// finding) on a failure without one; with KILN_FUZZ_VERBOSE set, prints what happened.
void fuzz_check(const char *what, bool ok, const Diag *d);

#endif
