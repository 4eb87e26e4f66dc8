// `kiln grad`: the gradient of a model's loss with respect to every parameter, on the
// reference evaluator (double precision, dropout active) or the JIT (compiled in training
// mode, the same dropout masks), written by parameter name, through api/kiln.h.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"

int cmd_grad(const CliOptions *o) {
  if (!o->weights || !o->inputs || !o->output) {
    fprintf(stderr, "kiln: grad needs --weights FILE, --inputs FILE and -o FILE (kiln grad --help)\n");
    return EXIT_USAGE;
  }
  KilnSet sets[CLI_MAX_SETS];
  KilnOptions ko = cli_kiln_options(o, sets);
  ko.grad_loss = o->loss ? o->loss : "loss";
  ko.training = true;
  if (!o->backend) ko.backend = KILN_BACKEND_REF;  // kiln grad's default: the oracle
  KilnModel *m = cli_open(o, &ko);
  if (!m) return EXIT_USER;
  Diag d = {0};
  StFile wf = {0}, inf = {0};
  bool ok = st_read(o->weights, &wf, &d) && st_read(o->inputs, &inf, &d) && kiln_compile(m, &d) &&
            kiln_bind_params(m, &wf, &d) && kiln_bind_inputs(m, &inf, &d) && kiln_run(m, o->seed, &d) &&
            kiln_write_outputs(m, o->output, &d);
  if (ok && o->verbose)
    fprintf(stderr, "kiln: wrote the loss and %d gradients to %s\n", kiln_count(m, KILN_OUTPUT) - 1, o->output);
  if (!ok) cli_error(&d);
  st_free(&wf);
  st_free(&inf);
  kiln_model_free(m);
  return ok ? 0 : EXIT_USER;
}
