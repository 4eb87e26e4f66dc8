// Memory planning, the pipeline's program pass "memplan": it needs the code generator's
// steps (each kernel call and the buffers it names), so codegen/memory.c builds the
// lifetimes and calls the planner below, unless the pass is disabled (`--disable-pass
// memplan`: one allocation per buffer, to compare). The planner is a pure function:
// intervals {bytes, first, last, pinned, may_share_with} -> arena offsets.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "passes/memplan.h"

static size_t round_up(size_t b) { return (b + MEM_ALIGN - 1) / MEM_ALIGN * MEM_ALIGN; }

// A group: intervals that share one block of memory (a chain of in-place takeovers).
typedef struct Group {
  size_t bytes;
  int first, last;
  bool pinned;
  size_t offset;
  int index;  // for a stable order
} Group;

static bool overlaps(const Group *a, const Group *b) {
  return a->pinned || b->pinned || (a->first <= b->last && b->first <= a->last);
}

static int by_size_desc(const void *x, const void *y) {
  const Group *a = *(Group *const *)x, *b = *(Group *const *)y;
  if (a->bytes != b->bytes) return a->bytes > b->bytes ? -1 : 1;
  if (a->first != b->first) return a->first < b->first ? -1 : 1;
  return a->index - b->index;
}

static int by_offset(const void *x, const void *y) {
  const Group *a = *(Group *const *)x, *b = *(Group *const *)y;
  if (a->offset != b->offset) return a->offset < b->offset ? -1 : 1;
  return a->index - b->index;
}

typedef struct Start {
  int first, index;
} Start;

static int by_first(const void *x, const void *y) {
  const Start *a = x, *b = y;
  if (a->first != b->first) return a->first < b->first ? -1 : 1;
  return a->index - b->index;
}

void pass_memplan_place(const MemInterval *v, int n, size_t *offset, MemStats *st) {
  memset(st, 0, sizeof *st);
  int *group = malloc(((size_t)n + 1) * sizeof *group);
  Group *gs = calloc((size_t)n + 1, sizeof *gs);
  bool *taken = calloc((size_t)n + 1, sizeof *taken);  // already taken over in place
  Start *order = malloc(((size_t)n + 1) * sizeof *order);
  int n_groups = 0, max_step = 0;
  for (int i = 0; i < n; i++) {
    order[i] = (Start){v[i].first, i};
    group[i] = -1;
    st->unplanned_bytes += round_up(v[i].bytes);
    if (v[i].last > max_step) max_step = v[i].last;
  }
  qsort(order, (size_t)n, sizeof *order, by_first);

  // Groups, in order of first step: an interval joins the group of the one it takes over
  // when that one is the group's latest member, dies exactly where this one starts, and
  // its block is big enough.
  for (int oi = 0; oi < n; oi++) {
    int i = order[oi].index, j = v[i].may_share_with;
    if (!v[i].bytes) continue;
    if (j >= 0 && j < n && j != i && !v[i].pinned && !v[j].pinned && !taken[j] && v[j].bytes &&
        group[j] >= 0 && v[j].first < v[i].first && v[j].last == v[i].first) {
      Group *gr = &gs[group[j]];
      if (gr->last == v[j].last && round_up(v[i].bytes) <= gr->bytes) {
        taken[j] = true;
        group[i] = group[j];
        if (v[i].last > gr->last) gr->last = v[i].last;
        st->n_in_place++;
        continue;
      }
    }
    group[i] = n_groups;
    gs[n_groups] = (Group){round_up(v[i].bytes), v[i].first, v[i].last, v[i].pinned, 0, n_groups};
    n_groups++;
  }

  // The lower bound: the most bytes live at one step (pinned groups at every step).
  int64_t *delta = calloc((size_t)max_step + 2, sizeof *delta);
  size_t pinned = 0;
  for (int k = 0; k < n_groups; k++) {
    if (gs[k].pinned) {
      pinned += gs[k].bytes;
      continue;
    }
    delta[gs[k].first] += (int64_t)gs[k].bytes;
    delta[gs[k].last + 1] -= (int64_t)gs[k].bytes;
  }
  int64_t live = 0, peak = 0;
  for (int s = 0; s <= max_step; s++) {
    live += delta[s];
    if (live > peak) peak = live;
  }
  st->lower_bound_bytes = pinned + (size_t)peak;
  st->pinned_bytes = pinned;
  free(delta);

  // Placement: largest first; each goes into the smallest gap between the blocks already
  // placed whose lifetimes overlap its own, or above them all.
  Group **by_size = malloc(((size_t)n_groups + 1) * sizeof *by_size);
  Group **near = malloc(((size_t)n_groups + 1) * sizeof *near);
  for (int k = 0; k < n_groups; k++) by_size[k] = &gs[k];
  qsort(by_size, (size_t)n_groups, sizeof *by_size, by_size_desc);
  for (int k = 0; k < n_groups; k++) {
    Group *gr = by_size[k];
    int m = 0;
    for (int q = 0; q < k; q++)
      if (overlaps(gr, by_size[q])) near[m++] = by_size[q];
    qsort(near, (size_t)m, sizeof *near, by_offset);
    size_t cur = 0, best = SIZE_MAX, best_gap = SIZE_MAX;
    for (int q = 0; q < m; q++) {
      if (near[q]->offset > cur && near[q]->offset - cur >= gr->bytes && near[q]->offset - cur < best_gap) {
        best_gap = near[q]->offset - cur;
        best = cur;
      }
      if (near[q]->offset + near[q]->bytes > cur) cur = near[q]->offset + near[q]->bytes;
    }
    gr->offset = best != SIZE_MAX ? best : cur;
    if (gr->offset + gr->bytes > st->arena_bytes) st->arena_bytes = gr->offset + gr->bytes;
  }
  for (int i = 0; i < n; i++) offset[i] = group[i] >= 0 ? gs[group[i]].offset : 0;
  free(by_size);
  free(near);
  free(group);
  free(gs);
  free(taken);
  free(order);
}
