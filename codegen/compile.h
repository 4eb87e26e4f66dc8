// Compiling a graph for the JIT: lower every needed node to kernels, optimise and load
// them, allocate buffers, and build the runtime plan that calls the kernels in order.
#ifndef KILN_COMPILE_H
#define KILN_COMPILE_H

#include "codegen/cg.h"
#include "ir/ir.h"
#include "codegen/lower.h"
#include "codegen/memory.h"
#include "runtime/plan.h"

typedef struct CgProgram {
  const IrGraph *g;
  CgJit *jit;
  RtPlan plan;
  void **value;     // per node: its buffer (native dtype), NULL when not computed
  size_t *bytes;    // per node: buffer size
  bool *alias;      // per node: value is another node's buffer (reshape), not owned
  void **scratch;
  size_t *scratch_bytes;
  int n_scratch;
  CgSteps steps;    // the symbolic plan: step k's kernel, work and buffer ids (plan.steps[k])
  int64_t *status;  // {code, node id, value, index}: kernels report data errors here
  uint64_t *seed;   // the dropout stream's seed (training): set before rt_plan_run; 0 at first
  void **step_bufs; // storage of every step's buffer table
  int *step_node;
  int n_kernels;    // distinct kernels emitted
  double compile_ms;  // all of cg_compile: lowering, LLVM (O3, codegen, JIT), buffers
  double lower_ms, llvm_ms;
  // The memory plan: computed values and scratch buffers at offsets in one arena (unless
  // CgOptions.no_memplan); parameters and inputs have buffers of their own.
  void *arena;
  size_t arena_bytes;      // 0 when not planned
  size_t *offset;          // per node: offset in the arena, or CG_NO_OFFSET
  size_t *scratch_offset;  // per scratch id: offset in the arena, or CG_NO_OFFSET
  MemStats mem;            // arena, lower bound and unplanned bytes of the plan
} CgProgram;

// The nodes `want` (all when NULL) needs: itself and everything upstream. Caller frees.
bool *cg_needed(const IrGraph *g, const bool *want);
// Lowers every needed node into cg's module and appends the plan's steps (no LLVM
// optimisation, no JIT): the part the JIT and AOT object emission share.
bool cg_lower_program(Cg *cg, const IrGraph *g, const bool *need, CgSteps *steps, Diag *d);

// Lowers what `want` needs (no LLVM optimisation, no JIT) and plans its buffers: the
// numbers `kiln check --memory` prints, and the number of plan steps.
bool cg_memory_stats(const IrGraph *g, const bool *want, const CgOptions *opt, MemStats *st,
                     int *n_steps, Diag *d);

// Compiles the nodes needed for `want` (all when NULL).
bool cg_compile(const IrGraph *g, const bool *want, const CgOptions *opt, CgProgram *p, Diag *d);
// After rt_plan_run: turns a kernel's data error into a message naming the node, and
// clears the status for the next run.
bool cg_program_status(const CgProgram *p, Diag *d);
void cg_program_free(CgProgram *p);

// Lowering of one node (codegen/lower_*.c): emits its kernels (once per distinct
// signature) and appends its steps. The table is indexed by IrOpKind; sources have none.
typedef bool (*CgLowerFn)(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d);
extern const CgLowerFn cg_lowerings[IR_OP_COUNT];

// A kernel name unique to the node's op, dtypes, shapes and attributes: nodes that would
// get identical code share one kernel. Returns true if the kernel already exists.
bool cg_kernel_name(Cg *cg, const IrNode *n, const char *extra, char *buf, size_t size);

#endif
