// dist.h in a kiln built without MPI: nothing is available, and nothing else may be called
// (callers hold no DistComm).
#include <assert.h>
#include <stddef.h>

#include "dist/dist.h"

bool dist_available(void) { return false; }

bool dist_init(DistComm **out, Diag *d) {
  *out = NULL;
  return diag_error(d, "this kiln was built without MPI (meson -Dmpi=enabled with libopenmpi-dev installed "
                    "builds it with MPI)");
}

int dist_rank(const DistComm *c) { return (void)c, 0; }
int dist_size(const DistComm *c) { return (void)c, 1; }
void dist_abort(DistComm *c, int code) { (void)code, assert(!c); }
void dist_finalize(DistComm *c) { assert(!c); }
bool dist_sum_f64(DistComm *c, double *x, int n, Diag *d) { return (void)x, (void)n, (void)d, assert(!c), true; }
bool dist_any(DistComm *c, bool mine, bool *any, Diag *d) { return (void)d, assert(!c), *any = mine, true; }
bool dist_same_u64(DistComm *c, uint64_t mine, bool *same, Diag *d) {
  return (void)mine, (void)d, assert(!c), *same = true, true;
}
bool dist_sum_reserve(DistComm *c, int capacity, Diag *d) { return (void)capacity, (void)d, assert(!c), true; }
bool dist_sum_start(DistComm *c, const float *send, float *recv, int64_t n, Diag *d) {
  return (void)send, (void)recv, (void)n, (void)d, assert(!c), true;
}
void dist_sum_poll(DistComm *c) { assert(!c); }
bool dist_sum_wait(DistComm *c, Diag *d) { return (void)d, assert(!c), true; }
