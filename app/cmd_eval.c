// `kiln eval`: a model's loss and accuracies over a whole data file, with the JIT in
// inference mode (api/evaluate.c compiles and scores; the metrics are listed there
// and in docs/data.md). Under mpirun every process scores its share of the batches and
// rank 0 prints the sums of all of them.
#include <stdio.h>
#include <stdlib.h>

#include "app/cli.h"
#include "api/evaluate.h"

int cmd_eval(const CliOptions *o) {
  if (!o->weights || !o->data) {
    fprintf(stderr, "kiln: eval needs --weights FILE and --data FILE (kiln eval --help)\n");
    return EXIT_USAGE;
  }
  DistComm *comm;
  int code = cli_dist_start(o, &comm);
  if (code) return code;
  Diag d = {0};
  StFile wf = {0};
  FeEvaluator e = {0};
  FeMetrics m;
  KilnSet sets[CLI_MAX_SETS];
  KilnOptions ko = cli_kiln_options(o, sets);
  if (dist_rank(comm) != 0) ko.log = NULL;
  bool ok = st_read(o->weights, &wf, &d) && fe_eval_open(o->model, &ko, o->loss ? o->loss : "loss", o->data, &e, &d);
  e.comm = comm;
  ok = ok && fe_eval_bind_file(&e, &wf, &d) && fe_eval_run(&e, &m, &d);
  if (ok && dist_rank(comm) == 0) fe_metrics_print(&m, stdout, false);
  if (!ok) cli_dist_fail(comm, &d);
  fe_eval_free(&e);
  st_free(&wf);
  dist_finalize(comm);
  return ok ? 0 : EXIT_USER;
}
