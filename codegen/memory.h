// Buffers of a compiled program: which values and scratch buffers the steps touch, their
// lifetimes over the step order, and their places in one arena (passes/memplan.h plans).
#ifndef KILN_CG_MEMORY_H
#define KILN_CG_MEMORY_H

#include "codegen/lower.h"
#include "ir/ir.h"
#include "passes/memplan.h"

#define CG_NO_OFFSET ((size_t)-1)

typedef struct CgMemory {
  size_t *node_offset;     // per node: offset in the arena, or CG_NO_OFFSET (parameters,
                           // inputs, reshapes (their input's buffer), nodes not computed)
  size_t *node_bytes;      // per node: its value's size
  int *in_place_of;        // per node: the parameter or input whose buffer its value is
                           // written into (an optimiser update in place, no offset), or -1
  size_t *scratch_offset;  // per scratch id
  size_t *scratch_bytes;
  MemStats stats;
} CgMemory;

// Lifetimes of every computed value and scratch buffer over `steps`, planned into one
// arena. Pinned (live over the whole run): values `want` marks (all when NULL: the caller
// reads them) and everything a `once` step touches. A training step's new parameter values
// and optimiser state (g->train) are written over the old ones where the step order allows
// (in_place_of), so they take no arena memory and need no copying back.
bool cg_memory_plan(const IrGraph *g, const bool *need, const bool *want, const CgSteps *steps,
                    CgMemory *m, Diag *d);
void cg_memory_free(CgMemory *m);

// The buffer a node's value lives in: reshapes share their input's.
int cg_memory_root(const IrGraph *g, int id);
// The same, following an update written in place to the parameter or state it replaces.
int cg_memory_home(const CgMemory *m, const IrGraph *g, int id);

#endif
