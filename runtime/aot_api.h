// The C API of a model compiled by `kiln compile --emit lib` (docs/aot.md). Self-contained
// (C99 headers only): kiln copies it into the generated kiln_model.h.
//
//   KilnModel *m;  char msg[2048];
//   if (kiln_model_create("w.safetensors" /* or NULL: embedded */, &m, msg, sizeof msg)) ...
//   kiln_model_run(m, inputs, outputs);  // caller-owned buffers, model dtypes, row-major
//   kiln_model_destroy(m);
//
// Every function returns KILN_OK (0) or an error code; the message is in `msg` (create)
// or kiln_model_error(m). Nothing calls exit().
#ifndef KILN_AOT_API_H
#define KILN_AOT_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
  KILN_OK = 0,
  KILN_ERR_ARG = 1,    // a bad argument (index, thread count, missing input buffer)
  KILN_ERR_FILE = 2,   // the weights file: unreadable, a tensor missing or of the wrong shape
  KILN_ERR_DATA = 3,   // a data error while running (an index or label out of range, ...)
  KILN_ERR_NOMEM = 4,
};

typedef struct KilnModel KilnModel;

typedef struct KilnTensorInfo {
  const char *name;
  const char *dtype;      // "f32", "i64", ...
  int rank;
  const int64_t *shape;
  size_t bytes;           // the buffer size run() reads or writes
} KilnTensorInfo;

// Loads the weights (a safetensors file, converted when no value changes; NULL: the ones
// embedded at compile time) and prepares the model.
int kiln_model_create(const char *weights_path, KilnModel **out, char *msg, size_t msg_size);
int kiln_model_n_inputs(const KilnModel *m);
int kiln_model_n_outputs(const KilnModel *m);   // declared outputs, then losses
int kiln_model_input(const KilnModel *m, int i, KilnTensorInfo *out);
int kiln_model_output(const KilnModel *m, int i, KilnTensorInfo *out);
int kiln_model_set_threads(KilnModel *m, int threads);  // default: every core
// inputs[i]: kiln_model_input(i).bytes in its dtype, or NULL when not given; outputs[j]: a
// buffer to fill, or NULL when not wanted. A wanted output needs all its inputs.
int kiln_model_run(KilnModel *m, const void *const *inputs, void *const *outputs);
const char *kiln_model_error(const KilnModel *m);  // the last run/set_threads error
void kiln_model_destroy(KilnModel *m);

struct RtProgram;
// What the generated kiln_model_create calls with the model's tables.
int rt_aot_api_create(const struct RtProgram *model, const char *weights_path, KilnModel **out,
                      char *msg, size_t msg_size);

#ifdef __cplusplus
}
#endif

#endif
