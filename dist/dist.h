// The processes of a data-parallel run (kiln train under mpirun): who this process is and
// the collectives the trainer needs, behind a small interface so that nothing else in kiln
// includes mpi.h. dist/mpi.c implements it on MPI; dist/none.c, in a kiln built without
// MPI (meson -Dmpi=disabled, or no MPI found), says it is not there. A DistComm is NULL in
// a single-process run; callers check before using it.
#ifndef KILN_DIST_H
#define KILN_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/diag.h"

typedef struct DistComm DistComm;

bool dist_available(void);  // built with MPI
// MPI_Init (threads: only the calling thread calls MPI) and the world's rank and size.
bool dist_init(DistComm **out, Diag *d);
int dist_rank(const DistComm *c);
int dist_size(const DistComm *c);
// Ends the run on every process with exit code `code` (after an error on this one: the
// others may be waiting in a collective).
void dist_abort(DistComm *c, int code);
void dist_finalize(DistComm *c);

// Sums x[0 .. n) over the processes, in place, blocking (the same result on every process).
bool dist_sum_f64(DistComm *c, double *x, int n, Diag *d);
// Whether any process says yes (a stop request); blocking.
bool dist_any(DistComm *c, bool mine, bool *any, Diag *d);
// Whether every process holds the same 64-bit value (a hash of its parameters); blocking.
bool dist_same_u64(DistComm *c, uint64_t mine, bool *same, Diag *d);

// Non-blocking sums of float buffers: dist_sum_start starts summing send[0 .. n) of every
// process into recv[0 .. n) (send may be read, not written, until dist_sum_wait);
// dist_sum_poll lets started sums progress (call it now and then while computing);
// dist_sum_wait finishes them all. At most `capacity` (dist_sum_reserve) in flight.
bool dist_sum_reserve(DistComm *c, int capacity, Diag *d);
bool dist_sum_start(DistComm *c, const float *send, float *recv, int64_t n, Diag *d);
void dist_sum_poll(DistComm *c);
bool dist_sum_wait(DistComm *c, Diag *d);

#endif
