// Files the user names: opening them for reading without hanging on a FIFO or a device, and
// checking an output path before any work (the same file as an input, not a regular file, a
// directory that is missing or read-only), and writing one atomically. Every refusal is a
// diagnostic naming the path.
#ifndef KILN_FILES_H
#define KILN_FILES_H

#include <stdbool.h>
#include <stdio.h>

#include "runtime/diag.h"

// Opens path for reading ("rb", close-on-exec). Anything but a regular file (a FIFO, a
// device, a directory) is refused before it is read, so a FIFO without a writer cannot block.
FILE *rt_open_read(const char *path, Diag *d);

// An input a command reads: the option that names it ("--weights", "MODEL") and its path.
typedef struct RtNamedPath {
  const char *option, *path;
} RtNamedPath;

// The output `path` (named by option, e.g. "-o") is not the same file (device and inode) as
// any of the n inputs, so writing it cannot replace one; when neither exists yet (another
// output of the command), not the same path with its directory resolved.
bool rt_output_not_input(const char *option, const char *path, const RtNamedPath *inputs, int n,
                         Diag *d);

// The output path can be written by replacing it: it is absent or a regular file (never a
// symlink, FIFO, device or directory, which writing would replace by a regular file), and its
// directory exists and is writable.
bool rt_output_writable(const char *path, Diag *d);

// Both, as the entry points run them before any work: 0 if the output is fine, 2 (a bad
// command line) if it is an input, 1 if it cannot be written.
int rt_output_check(const char *option, const char *path, const RtNamedPath *inputs, int n, Diag *d);

// The whole regular file path (rt_open_read), NUL-terminated, into *out (*len bytes, the
// caller frees it); more than max_bytes is refused as not `what` ("a model file").
bool rt_read_text(const char *path, size_t max_bytes, const char *what, char **out, size_t *len, Diag *d);

// Writes path without ever leaving it half written: write(f, ctx) fills a temporary file of a
// unique name beside it (mkstemp), which is flushed, fsynced and renamed over path. A failure
// removes the temporary and names the step that failed (write leaves errno set, or 0 when out
// of memory). A path that exists and is not a regular file (a symlink, FIFO, device) is
// refused, never replaced.
typedef bool (*RtWriteFn)(FILE *f, void *ctx);
bool rt_write_atomic(const char *path, RtWriteFn write, void *ctx, Diag *d);
// The same without the fsync, for files whose loss or truncation in a crash costs nothing
// but time because their reader checks them (the compile cache's entries, checksummed):
// a cold compile stores ~50 of them, and their fsyncs were ~3% of it.
bool rt_write_atomic_unsynced(const char *path, RtWriteFn write, void *ctx, Diag *d);

#endif
