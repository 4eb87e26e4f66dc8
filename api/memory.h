// The memory plan of a graph's program as the public KilnMemory record: one constructor for
// kiln_memory_plan (a KilnModel's program, the trainer's) and `kiln check --memory` (a
// graph's outputs or gradients, no model opened).
#ifndef KILN_MEMORY_H
#define KILN_MEMORY_H

#include "api/kiln.h"
#include "codegen/compile.h"

// The plan of g's program computing want, lowered with copt (without LLVM): the arena
// planned, or the sum of its buffers when copt->no_memplan; state and grads left 0.
bool kiln_memory_of(const IrGraph *g, const bool *want, const CgOptions *copt, KilnMemory *out, Diag *d);

#endif
