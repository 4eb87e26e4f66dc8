// Safetensors files (the Hugging Face format): read with full validation, write atomically.
// Layout: 8-byte little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"k": "v"}}, then the raw little-endian data; offsets are relative to
// the end of the header.
#ifndef KILN_SAFETENSORS_H
#define KILN_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
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
  void *data;  // points into the file's buffer (read) or the caller's memory (write)
} StTensor;

typedef struct StFile {
  char *path;
  int n;
  StTensor *tensors;  // in header order
  void *buffer;       // the whole file (owned)
  size_t size;
} StFile;

// Reads and validates a whole file. Every error names the file (and the tensor).
bool st_read(const char *path, StFile *out, Diag *d);
// The same for a file image in memory (e.g. weights embedded in an executable), borrowed:
// the tensors point into `data`, which must outlive the StFile. `name` stands for the path.
bool st_read_memory(const char *name, const void *data, size_t size, StFile *out, Diag *d);
const StTensor *st_find(const StFile *f, const char *name);
void st_free(StFile *f);

// Writes tensors (in the given order) to path via a temporary file, fsync and rename, so a
// reader never sees a partial file. A path that is not a regular file (a symlink, FIFO,
// device or directory) is refused, not replaced (rt_output_writable).
bool st_write(const char *path, const StTensor *tensors, int n, Diag *d);

int64_t st_numel(const StTensor *t);

#endif
