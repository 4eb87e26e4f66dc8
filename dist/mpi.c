// dist.h on MPI: the only file of kiln that includes mpi.h. Errors are returned (the
// communicator's handler is MPI_ERRORS_RETURN), so that the caller can say what failed;
// a process that dies makes Open MPI's launcher end the others.
#include <mpi.h>
#include <stdlib.h>

#include "dist/dist.h"

struct DistComm {
  int rank, size;
  MPI_Request *req;  // the sums in flight
  int n_req, cap_req;
};

bool dist_available(void) { return true; }

static bool failed(int rc, const char *what, Diag *d) {
  if (rc == MPI_SUCCESS) return false;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  diag_error(d, "MPI: %s failed: %.*s", what, len, msg);
  return true;
}

bool dist_init(DistComm **out, Diag *d) {
  *out = NULL;
  int provided = 0;
  if (failed(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread", d)) return false;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  DistComm *c = calloc(1, sizeof *c);
  if (!c) return diag_error(d, "out of memory");
  MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &c->size);
  if (provided < MPI_THREAD_FUNNELED) {
    free(c);
    return diag_error(d, "MPI: this MPI does not allow OpenMP threads beside it (MPI_THREAD_FUNNELED)");
  }
  *out = c;
  return true;
}

int dist_rank(const DistComm *c) { return c ? c->rank : 0; }
int dist_size(const DistComm *c) { return c ? c->size : 1; }

void dist_abort(DistComm *c, int code) {
  if (c) MPI_Abort(MPI_COMM_WORLD, code);
}

void dist_finalize(DistComm *c) {
  if (!c) return;
  free(c->req);
  free(c);
  MPI_Finalize();
}

bool dist_sum_f64(DistComm *c, double *x, int n, Diag *d) {
  return !failed(MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce", d);
}

bool dist_any(DistComm *c, bool mine, bool *any, Diag *d) {
  int x = mine;
  if (failed(MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD), "MPI_Allreduce", d)) return false;
  *any = x != 0;
  return true;
}

bool dist_same_u64(DistComm *c, uint64_t mine, bool *same, Diag *d) {
  uint64_t lo = mine, hi = mine;
  if (failed(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce", d) ||
      failed(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce", d))
    return false;
  *same = lo == hi;
  return true;
}

bool dist_sum_reserve(DistComm *c, int capacity, Diag *d) {
  if (capacity <= c->cap_req) return true;
  MPI_Request *r = realloc(c->req, (size_t)capacity * sizeof *r);
  if (!r) return diag_error(d, "out of memory");
  c->req = r;
  c->cap_req = capacity;
  return true;
}

// A sum of n floats as pieces of at most INT_MAX / 2 elements (MPI counts are ints).
bool dist_sum_start(DistComm *c, const float *send, float *recv, int64_t n, Diag *d) {
  const int64_t piece = 1 << 30;
  for (int64_t at = 0; at < n; at += piece) {
    if (c->n_req == c->cap_req && !dist_sum_reserve(c, c->cap_req * 2 + 16, d)) return false;
    int count = (int)(n - at < piece ? n - at : piece);
    if (failed(MPI_Iallreduce(send + at, recv + at, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &c->req[c->n_req]),
               "MPI_Iallreduce", d))
      return false;
    c->n_req++;
  }
  return true;
}

void dist_sum_poll(DistComm *c) {
  int done;
  if (c->n_req) MPI_Testall(c->n_req, c->req, &done, MPI_STATUSES_IGNORE);
}

bool dist_sum_wait(DistComm *c, Diag *d) {
  int n = c->n_req;
  c->n_req = 0;
  return !failed(MPI_Waitall(n, c->req, MPI_STATUSES_IGNORE), "MPI_Waitall", d);
}
