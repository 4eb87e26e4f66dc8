// The memory planner: buffers with lifetimes over a schedule of steps -> offsets in one
// arena. A pure function of its input (no IR, no codegen), so that it can be tested on
// hand-made interval sets; codegen/memory.c builds the intervals from a program's steps.
#ifndef KILN_MEMPLAN_H
#define KILN_MEMPLAN_H

#include <stdbool.h>
#include <stddef.h>

#define MEM_ALIGN 64  // every offset and every size is rounded to this

typedef struct MemInterval {
  size_t bytes;        // 0: no buffer (gets offset 0, takes no room)
  int first, last;     // the steps that first and last touch it (inclusive)
  bool pinned;         // live over the whole run (parameters, outputs...): shares nothing
  int may_share_with;  // -1, or an interval that dies at step `first` whose memory this one
                       // may take over in place (the step reads element i before writing it)
} MemInterval;

typedef struct MemStats {
  size_t arena_bytes;        // the arena the offsets fit in
  size_t lower_bound_bytes;  // the most bytes live at once at any step (no plan can do better)
  size_t unplanned_bytes;    // the sum of all buffers (one allocation each)
  size_t pinned_bytes;       // of which pinned (live over the whole run)
  int n_in_place;            // intervals placed over the input they replace
} MemStats;

// Places n intervals: offset[i] (a multiple of MEM_ALIGN) such that no two intervals whose
// lifetimes overlap overlap in memory, except an interval and the one it took over in place.
// Best fit, largest first (as XLA's heap simulator and Glow's allocator do).
void pass_memplan_place(const MemInterval *v, int n, size_t *offset, MemStats *st);

#endif
