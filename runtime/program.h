// A compiled program as the runtime sees it, with no IR and no LLVM: its buffers (sizes,
// places in one arena from the memory plan, or buffers of their own), the kernel steps over
// them, descriptions of its inputs, parameters and outputs, and the nodes whose kernels can
// report data errors. Codegen is its only producer: the JIT fills one in memory with the
// kernels it loaded (codegen/compile.c), `kiln compile` writes the same description out as
// C data next to the kernels' object file (codegen/aot_tables.c). An RtInstance is one set
// of buffers and the executor's plan over them; the status word's message, binding a
// tensor by name and the allocation are written here once for both.
#ifndef KILN_PROGRAM_H
#define KILN_PROGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/diag.h"
#include "runtime/plan.h"
#include "runtime/safetensors.h"

#define RT_MAX_RANK 8

// Status codes kernels write into the status word {code, node id, value, index} (first
// error wins); rt_program_status says what they mean.
enum {
  RT_STATUS_OK = 0,
  RT_STATUS_INDEX_RANGE = 1,  // value: the index (RtCheck.range: the indexed axis)
  RT_STATUS_LABEL_RANGE = 2,  // value: the label (RtCheck.range: the classes)
  RT_STATUS_CAST_RANGE = 3,   // value: the f32 bits of a float an integer cannot hold
  RT_STATUS_INT_OVERFLOW = 4, // an integer result outside its dtype
  RT_STATUS_TARGET_RANGE = 5, // value: the f32 bits of a kl_div target that is < 0 or NaN
};

typedef enum {
  RT_BUF_NONE,   // not computed: no memory
  RT_BUF_OWN,    // an allocation of its own (parameters, inputs, or no memory plan)
  RT_BUF_ARENA,  // at `offset` in the arena
  RT_BUF_ALIAS,  // the memory of buffer `alias` (a reshape of it)
  RT_BUF_CONST,  // `data`, read-only data of the description (a step's dropout streams)
} RtBufKind;

// Buffer ids: 0..n_nodes-1 node values (by IR node id), then scratch buffers, then constant
// ones, then the status word (int64_t[4], id n_bufs - 2) and the seed (uint64_t[2], id
// n_bufs - 1: the dropout seed and the run's share of the step's rows, 0 but in a
// data-parallel or accumulating trainer: codegen/lower_ew.c, cg_dropout_key).
typedef struct RtBuf {
  int kind;       // RtBufKind
  int alias;      // RT_BUF_ALIAS: the buffer it shares (never an alias itself)
  size_t bytes;   // the value's size (aliases too)
  size_t offset;  // RT_BUF_ARENA
  const void *data;  // RT_BUF_CONST
} RtBuf;

typedef struct RtProgramStep {
  RtKernel fn;         // NULL in a description `kiln compile` writes out (its symbol: kernel)
  const char *kernel;  // the kernel's symbol
  const char *name;    // the node's name (profiles)
  int64_t work;
  bool once;           // reads only parameters: run after binding them
  int n_args, args;    // buffer ids: arg_ids[args .. args + n_args)
  int node;            // node id
  uint64_t needs;      // inputs (bit k: inputs[k]) the step's node depends on
  uint64_t feeds;      // outputs (bit j: outputs[j]) that depend on it
} RtProgramStep;

typedef struct RtTensor {
  const char *name;
  const char *where;   // model-file place (parameters; NULL otherwise)
  int dtype;           // DType
  int rank;
  int64_t shape[RT_MAX_RANK];
  int buf;
  uint64_t needs;      // the inputs it depends on (bit k: inputs[k])
  uint64_t feeds;      // the outputs that depend on it (bit j: outputs[j])
} RtTensor;

// A node whose kernels can report a data error in the status word.
typedef struct RtCheck {
  int node;
  const char *where, *name, *op, *dtype;
  int64_t range;       // gather: the data's indexed axis; scatter_add: the output's;
                       // cross_entropy: the classes
} RtCheck;

typedef struct RtProgram {
  const char *name;    // the model file it was compiled from
  const char *target;  // CPU name and vector width
  int n_nodes, n_bufs;
  const RtBuf *bufs;
  size_t arena_bytes;  // 0: no memory plan
  int n_steps;
  const RtProgramStep *steps;
  const int *arg_ids;
  int n_arg_ids;
  int n_inputs, n_outputs, n_params, n_checks;
  const RtTensor *inputs, *outputs, *params;  // outputs: declared outputs, then losses
  const RtCheck *checks;
  const unsigned char *weights;  // embedded safetensors image of the parameters, or NULL
  size_t weights_size;
} RtProgram;

// One instance: the arena, every buffer's memory and the plan of all steps over them.
typedef struct RtInstance {
  const RtProgram *p;
  void *arena;
  void **buf;      // per buffer id: its memory (NULL: RT_BUF_NONE)
  bool *borrowed;  // per buffer: bound in place to memory the caller owns (not freed)
  bool *released;  // per buffer: a weight held only in its packed form (rt_instance_prepare)
  bool drop_borrowed;  // borrowed memory is a read-only file image whose pages a release may
                       // drop (an executable's embedded weights): they come back from the file
  void **step_bufs;
  RtPlan plan;     // every step, in order (the `once` ones too)
  int64_t *status;
  uint64_t *seed;
  bool poison;     // fresh buffers are filled with NaN bytes (RtTuning.poison_buffers)
} RtInstance;

// The bytes rt_instance_create allocates for p: its arena and every buffer of its own.
uint64_t rt_program_bytes(const RtProgram *p);
// Allocates the arena and every buffer of its own, and builds the plan.
bool rt_instance_create(const RtProgram *p, bool poison, RtInstance *in, Diag *d);
void rt_instance_free(RtInstance *in);
// Points buffer b at caller-owned memory (an embedded weight used in place; NULL: back to
// a buffer of its own) and every step's table at the buffers again.
bool rt_instance_borrow(RtInstance *in, int b, void *mem, Diag *d);
// Runs the once-steps (the weights' packing) one at a time, and with `release` frees each
// parameter buffer that only once-steps read right after the last of them has run: such a
// weight is then held only in its packed form, and the packed copies grow while the
// unpacked ones shrink, so the two are never resident together.
void rt_instance_prepare(RtInstance *in, int threads, bool release);
// The buffers rt_instance_prepare released, allocated again (their values are gone: the
// caller binds them again). False when out of memory.
bool rt_instance_restore(RtInstance *in, Diag *d);
// Buffer b was released (its memory is gone).
bool rt_instance_released(const RtInstance *in, int b);
// The bytes of the parameter buffers rt_instance_prepare would release (the weights read only
// by once-steps), of all parameters' own buffers, and the largest of the former.
void rt_program_weight_bytes(const RtProgram *p, uint64_t *pack_only, uint64_t *all, uint64_t *largest);
// After a run: turns a kernel's data error into a message naming the node (false), and
// clears the status word for the next run. The one place status codes become words.
bool rt_program_status(const RtProgram *p, int64_t *status, Diag *d);

int64_t rt_tensor_numel(const RtTensor *t);
size_t rt_tensor_bytes(const RtTensor *t);
// Checks tensor t (of file f) against description want and converts it into dst in want's
// dtype, refusing lossy conversions: the messages of binding a tensor by name. A tensor of a
// file opened by st_open is read here, straight into dst when the dtypes are equal.
bool rt_tensor_convert(const RtTensor *want, const StFile *f, const StTensor *t, void *dst, Diag *d);

#endif
