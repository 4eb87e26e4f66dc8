// Safetensors files (the Hugging Face format): read with full validation, write atomically.
// Layout: 8-byte little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"k": "v"}}, then the raw little-endian data; offsets are relative to
// the end of the header.
#ifndef KILN_SAFETENSORS_H
#define KILN_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "runtime/diag.h"
#include "runtime/dtype.h"

#define ST_MAX_RANK 8

typedef struct StTensor {
  char *name;
  DType dtype;
  int rank;
  int64_t shape[ST_MAX_RANK];
  size_t nbytes;
  void *data;     // points into the file's buffer (read) or the caller's memory (write);
                  // NULL in a file opened by st_open (st_load reads it)
  size_t offset;  // read: where the data starts after the header
} StTensor;

typedef struct StFile {
  char *path;
  int n;
  StTensor *tensors;  // in header order
  void *buffer;       // the whole file (owned); NULL when borrowed or opened by st_open
  size_t size;
  FILE *fp;           // st_open: the file, read tensor by tensor (st_load); else NULL
  size_t data_start;  // st_open: the data's offset in the file (8 + header length)
} StFile;

// Reads and validates a whole file. Every error names the file (and the tensor).
bool st_read(const char *path, StFile *out, Diag *d);
// The same for a file image in memory (e.g. weights embedded in an executable), borrowed:
// the tensors point into `data`, which must outlive the StFile. `name` stands for the path.
bool st_read_memory(const char *name, const void *data, size_t size, StFile *out, Diag *d);
// Reads and validates the header only; each tensor's data is read when st_load asks for it
// (data stays NULL), straight into the buffer that keeps it: a weights file costs no copy
// of its own. Nothing is mapped: a file that shrinks or changes while it is open gives an
// error or the new bytes, never a crash (SIGBUS). st_free closes it.
bool st_open(const char *path, StFile *out, Diag *d);
// t's nbytes bytes into dst: copied from memory, or read from a file opened by st_open
// (a BOOL tensor's elements checked then, as st_read checks them at once).
bool st_load(const StFile *f, const StTensor *t, void *dst, Diag *d);
const StTensor *st_find(const StFile *f, const char *name);
void st_free(StFile *f);

// Writes tensors (in the given order) to path via a temporary file, fsync and rename, so a
// reader never sees a partial file. A path that is not a regular file (a symlink, FIFO,
// device or directory) is refused, not replaced (rt_output_writable).
bool st_write(const char *path, const StTensor *tensors, int n, Diag *d);

int64_t st_numel(const StTensor *t);

#endif
