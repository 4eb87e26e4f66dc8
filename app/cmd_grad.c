// `kiln grad`: the gradient of a model's loss with respect to every parameter, on the
// reference evaluator (double precision, dropout active) or the JIT (compiled in training
// mode, the same dropout masks), written by parameter name.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/compile.h"
#include "api/bind.h"
#include "app/cli.h"
#include "passes/passes.h"

// The JIT's form of the evaluation: compile what `want` needs with dropout active, bind
// the files natively, set the seed, run once and write the tensors.
static bool grad_jit(const CliOptions *o, const IrGraph *g, const StFile *wf, const StFile *inf,
                     const bool *want, const IrNode **nodes, const char **names, int n,
                     FILE *log, Diag *d) {
  CgOptions copt = {.dump_dir = o->dump_llvm, .training = true, .tuning = o->tuning,
                     .no_memplan = cli_pass_disabled(o, "memplan")};
  CgProgram p;
  if (!cg_compile(g, want, &copt, &p, d)) return false;
  if (log) fprintf(log, "kiln: compiled %d kernels, %d steps in %.0f ms\n", p.n_kernels, p.plan.n_steps, p.compile_ms);
  bool *given = calloc((size_t)g->n_nodes + 1, sizeof *given);
  bool ok = fe_bind_native(g, wf, IR_OP_PARAM, p.value, NULL, log, d) &&
            fe_bind_native(g, inf, IR_OP_INPUT, p.value, given, log, d);
  if (ok)  // an unbound input would be read as garbage: name the first one the loss needs
    for (int i = 0; ok && i < g->n_nodes; i++)
      if (g->nodes[i]->op == IR_OP_INPUT && p.value[i] && !given[i])
        ok = diag_error(d, "%s: input \"%s\" is missing; the loss needs it", o->inputs, g->nodes[i]->name);
  if (ok) {
    int threads = o->threads ? o->threads : rt_default_threads(o->tuning.threads);
    *p.seed = o->seed;
    rt_plan_prepare(&p.plan, threads);
    rt_plan_run(&p.plan, threads);
    ok = cg_program_status(&p, d) && fe_write_native(o->output, nodes, names, n, p.value, d);
  }
  free(given);
  cg_program_free(&p);
  return ok;
}

int cmd_grad(const CliOptions *o) {
  if (!o->weights || !o->inputs || !o->output) {
    fprintf(stderr, "kiln: grad needs --weights FILE, --inputs FILE and -o FILE (kiln grad --help)\n");
    return EXIT_USAGE;
  }
  IrGraph g;
  if (!cli_load(o, o->loss ? o->loss : "loss", &g)) return EXIT_USER;
  Diag d = {0};
  const char *loss = o->loss ? o->loss : "loss";
  StFile wf = {0}, inf = {0};
  IrValues vals = {0};
  bool *want = NULL, *given = NULL;
  const IrNode **nodes = NULL;
  const char **names = NULL;
  bool ok = true;
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
    bool jit = o->backend && strcmp(o->backend, "jit") == 0;
    if (jit)
      ok = st_read(o->weights, &wf, &d) && st_read(o->inputs, &inf, &d) &&
           grad_jit(o, &g, &wf, &inf, want, nodes, names, n, log, &d);
    else
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
