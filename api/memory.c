// The memory plan of a graph's program as a KilnMemory (see memory.h).
#include "api/memory.h"

bool kiln_memory_of(const IrGraph *g, const bool *want, const CgOptions *copt, KilnMemory *out, Diag *d) {
  MemStats st;
  CgResident res;
  int n_steps = 0;
  if (!cg_memory_stats(g, want, copt, &st, &res, &n_steps, d)) return false;
  *out = (KilnMemory){.arena = copt->no_memplan ? st.unplanned_bytes : st.arena_bytes,
                      .lower_bound = st.lower_bound_bytes, .unplanned = st.unplanned_bytes,
                      .pinned = st.pinned_bytes, .steps = n_steps, .in_place = copt->no_memplan ? 0 : st.n_in_place,
                      .params = res.params, .pack_only = res.pack_only,
                      .largest_pack_only = res.largest_pack_only, .packed = res.packed, .inputs = res.inputs};
  return true;
}
