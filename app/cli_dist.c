// Starting a command as one of the processes of an mpirun job (kiln train, kiln eval;
// docs/distributed.md): MPI when this kiln has it, a clear refusal when it has not.
#include <stdio.h>

#include "app/cli.h"

int cli_dist_start(const CliOptions *o, DistComm **comm) {
  *comm = NULL;
  if (o->launched_procs <= 1) return 0;  // alone: no MPI at all
  if (!dist_available()) {
    fprintf(stderr, "kiln: started as one of %d processes (mpirun), but this kiln was built without MPI: "
            "rebuild with meson -Dmpi=enabled (needs libopenmpi-dev), or start it without mpirun "
            "(docs/distributed.md)\n", o->launched_procs);
    return EXIT_USER;
  }
  Diag d = {0};
  if (!dist_init(comm, &d)) {
    cli_error(&d);
    return EXIT_USER;
  }
  return 0;
}

void cli_dist_fail(DistComm *comm, Diag *d) {
  if (comm) diag_prefix(d, "process %d of %d: ", dist_rank(comm), dist_size(comm));
  cli_error(d);
  dist_abort(comm, EXIT_USER);  // the others may wait in a collective: end them too
}
