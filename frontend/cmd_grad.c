// `kiln grad`: the gradient of a model's loss with respect to every parameter, on the
// reference evaluator (double precision, dropout active), written by parameter name.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/bind.h"
#include "frontend/cli.h"
#include "passes/passes.h"

int cmd_grad(const CliOptions *o) {
  if (!o->weights || !o->inputs || !o->output) {
    fprintf(stderr, "kiln: grad needs --weights FILE, --inputs FILE and -o FILE (kiln grad --help)\n");
    return EXIT_USAGE;
  }
  IrGraph g;
  if (!cli_load(o, &g)) return EXIT_USER;
  Diag d = {0};
  const char *loss = o->loss ? o->loss : "loss";
  StFile wf = {0}, inf = {0};
  IrValues vals = {0};
  bool *want = NULL, *given = NULL;
  const IrNode **nodes = NULL;
  const char **names = NULL;
  bool ok = pass_autodiff(&g, loss, false, &d);
  if (ok) {
    ir_values_init(&vals, &g);
    want = calloc((size_t)g.n_nodes + 1, sizeof *want);
    given = calloc((size_t)g.n_nodes + 1, sizeof *given);
    nodes = malloc(((size_t)g.n_grads + 2) * sizeof *nodes);
    names = malloc(((size_t)g.n_grads + 2) * sizeof *names);
    IrNode *loss_node = NULL;
    for (int i = 0; i < g.n_losses; i++)
      if (!strcmp(g.losses[i].name, loss)) loss_node = g.losses[i].node;
    int n = 0;
    nodes[n] = loss_node;
    names[n++] = "loss";
    for (int i = 0; i < g.n_grads; i++) {
      nodes[n] = g.grads[i].grad;
      names[n++] = g.grads[i].of->name;
    }
    for (int k = 0; k < n; k++) want[nodes[k]->id] = true;
    FILE *log = o->verbose ? stderr : NULL;
    IrEvalMode mode = {.training = true, .seed = o->seed};
    ok = st_read(o->weights, &wf, &d) && fe_bind_weights(&g, &wf, &vals, log, &d) &&
         st_read(o->inputs, &inf, &d) && fe_bind_inputs(&g, &inf, &vals, given, log, &d) &&
         ir_eval(&g, &vals, want, &mode, &d) && fe_write_values(o->output, nodes, names, n, &vals, &d);
    if (ok && log) fprintf(log, "kiln: wrote the loss and %d gradients to %s\n", g.n_grads, o->output);
  }
  if (!ok) cli_error(&d);
  free(want);
  free(given);
  free(nodes);
  free(names);
  st_free(&wf);
  st_free(&inf);
  ir_values_free(&vals);
  ir_graph_free(&g);
  return ok ? 0 : EXIT_USER;
}
