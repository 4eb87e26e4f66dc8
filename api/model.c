// KilnModel (api/kiln.h): a model file loaded and passed through the pipeline, the outputs
// chosen, compiled on the JIT or kept for the reference evaluator, bound by name and run.
// The one place where the sequence load -> compile -> bind -> prepare -> run -> read is
// written; the commands and the tests call it.
#include "api/kiln.h"

#include <stdlib.h>
#include <string.h>

#include "api/bind.h"
#include "api/memory.h"
#include "api/model_impl.h"
#include "frontend/frontend.h"
#include "passes/passes.h"

// All outputs and losses, or with grad_loss the loss and every gradient.
static bool select_all(KilnModel *m, Diag *d) {
  IrGraph *g = &m->g;
  m->n_out = 0;
  if (m->o.grad_loss) {
    const IrNode *loss = NULL;
    for (int i = 0; i < g->n_losses; i++)
      if (!strcmp(g->losses[i].name, m->o.grad_loss)) loss = g->losses[i].node;
    if (!loss) return diag_error(d, "%s: no loss named \"%s\"", g->file, m->o.grad_loss);
    m->out[m->n_out] = loss;
    m->out_name[m->n_out++] = "loss";
    for (int i = 0; i < g->n_grads; i++) {
      m->out[m->n_out] = g->grads[i].grad;
      m->out_name[m->n_out++] = g->grads[i].of->name;
    }
    return true;
  }
  for (int i = 0; i < g->n_outputs; i++) {
    m->out[m->n_out] = g->outputs[i];
    m->out_name[m->n_out++] = g->outputs[i]->name;
  }
  for (int i = 0; i < g->n_losses; i++) {
    m->out[m->n_out] = g->losses[i].node;
    m->out_name[m->n_out++] = g->losses[i].name;
  }
  return true;
}

bool kiln_model_open(const char *path, const KilnOptions *opt, KilnModel **out, Diag *d) {
  return kiln_model_open_with(path, opt, NULL, out, d);
}

bool kiln_model_open_with(const char *path, const KilnOptions *opt, const PassOptions *train,
                          KilnModel **out, Diag *d) {
  const PassOptimizer *optimizer = train ? train->optimizer : NULL;
  *out = NULL;
  PassOptions po = {.loss = opt->grad_loss, .training = opt->training, .optimizer = optimizer,
                    .bf16 = opt->precision == KILN_PRECISION_BF16,
                    .loss_denominators = train && train->loss_denominators,
                    .int8 = opt->precision == KILN_PRECISION_INT8,
                    .recompute_layers = opt->recompute_layers};
  if (!pass_precision_supported(&po, d)) return false;  // before loading: the pass's own rule
  KilnModel *m = calloc(1, sizeof *m);
  FeSet *sets = calloc((size_t)opt->n_sets + 1, sizeof *sets);
  if (!m || !sets) {
    free(m);
    free(sets);
    return diag_error(d, "out of memory");
  }
  m->o = *opt;
  bool ok = true;
  for (int i = 0; i < opt->n_sets && ok; i++) {
    if (strlen(opt->sets[i].name) >= sizeof sets[i].name)
      ok = diag_error(d, "--set %s: the name is too long", opt->sets[i].name);
    else
      snprintf(sets[i].name, sizeof sets[i].name, "%s", opt->sets[i].name);
    sets[i].value = opt->sets[i].value;
  }
  ok = ok && fe_load_model_limited(path, sets, opt->n_sets,
                                     &(FeLimits){opt->max_nodes, opt->max_config, opt->output_groups,
                                                 opt->n_output_groups}, &m->g, d);
  free(sets);
  if (!ok) {
    free(m);
    return false;
  }
  m->loaded = true;
  IrGraph *g = &m->g;
  if (!pass_run_pipeline(g, &po, NULL, opt->disabled_passes, opt->n_disabled_passes, d)) {
    kiln_model_free(m);
    return false;
  }
  size_t n = (size_t)g->n_outputs + g->n_losses + g->n_grads + 2;
  m->out = calloc(n, sizeof *m->out);
  m->out_name = calloc(n, sizeof *m->out_name);
  m->bound = calloc((size_t)g->n_nodes + 1, sizeof *m->bound);
  m->inputs = calloc((size_t)g->n_nodes + 1, sizeof *m->inputs);
  m->params = calloc((size_t)g->n_nodes + 1, sizeof *m->params);
  if (!m->out || !m->out_name || !m->bound || !m->inputs || !m->params) {
    kiln_model_free(m);
    return diag_error(d, "out of memory");
  }
  for (int i = 0; i < g->n_nodes; i++) {
    if (g->nodes[i]->op == IR_OP_INPUT) m->inputs[m->n_inputs++] = g->nodes[i];
    if (g->nodes[i]->op == IR_OP_PARAM) m->params[m->n_params++] = g->nodes[i];
  }
  if (!select_all(m, d)) {
    kiln_model_free(m);
    return false;
  }
  m->no_memplan = pass_disabled(opt->disabled_passes, opt->n_disabled_passes, "memplan");
  m->o.sets = NULL, m->o.n_sets = 0;  // read here only: the caller's arrays need not outlive the call
  m->o.disabled_passes = NULL, m->o.n_disabled_passes = 0;
  m->threads = rt_default_threads(opt->threads ? opt->threads : opt->tuning.threads);
  *out = m;
  return true;
}

void kiln_model_free(KilnModel *m) {
  if (!m) return;
  if (m->compiled && kiln_is_jit(m)) cg_program_free(&m->p);
  if (m->vals.v) ir_values_free(&m->vals);
  free(m->out_buf);
  free(m->out);
  free(m->out_name);
  free(m->bound);
  free(m->need);
  free(m->inputs);
  free(m->params);
  if (m->loaded) ir_graph_free(&m->g);
  free(m);
}

// ---------------------------------------------------------------------------------------
// Description.

static KilnTensorInfo info_of(const IrNode *n, const char *name) {
  KilnTensorInfo t = {.name = name, .dtype = n->dtype, .rank = n->shape.rank, .where = n->where};
  for (int i = 0; i < n->shape.rank; i++) t.shape[i] = n->shape.dim[i];
  return t;
}

int kiln_count(const KilnModel *m, KilnRole role) {
  return role == KILN_OUTPUT ? m->n_out : role == KILN_INPUT ? m->n_inputs : m->n_params;
}

KilnTensorInfo kiln_info(const KilnModel *m, KilnRole role, int i) {
  if (role == KILN_OUTPUT) return info_of(m->out[i], m->out_name[i]);
  const IrNode *n = role == KILN_INPUT ? m->inputs[i] : m->params[i];
  return info_of(n, n->name);
}

bool kiln_find(const KilnModel *m, KilnRole role, const char *name, KilnTensorInfo *t) {
  if (role == KILN_OUTPUT) {
    for (int k = 0; k < m->n_out; k++)
      if (!strcmp(m->out_name[k], name)) return *t = info_of(m->out[k], m->out_name[k]), true;
    return false;
  }
  const IrNode *n = ir_graph_find(&m->g, name);
  if (!n || n->op != (role == KILN_INPUT ? IR_OP_INPUT : IR_OP_PARAM)) return false;
  *t = info_of(n, n->name);
  return true;
}

const char *kiln_model_file(const KilnModel *m) { return m->g.file; }
double kiln_gflop(const KilnModel *m) { return ir_count_flops(&m->g) / 1e9; }
int64_t kiln_param_values(const KilnModel *m) { return ir_count_params(&m->g); }

// ---------------------------------------------------------------------------------------
// Selection and compilation.

bool kiln_select_given(KilnModel *m, const StFile *f, Diag *d) {
  const IrGraph *g = &m->g;
  int nn = g->n_nodes;
  bool *given = calloc((size_t)nn + 1, sizeof *given), *avail = calloc((size_t)nn + 1, sizeof *avail);
  if (!given || !avail) {
    free(given);
    free(avail);
    return diag_error(d, "out of memory");
  }
  for (int k = 0; k < f->n; k++) {
    const IrNode *n = ir_graph_find(g, f->tensors[k].name);
    if (n && n->op == IR_OP_INPUT) given[n->id] = true;
  }
  fe_available(g, given, avail);
  int kept = 0;
  for (int i = 0; i < m->n_out; i++) {
    if (avail[m->out[i]->id]) {
      m->out[kept] = m->out[i];
      m->out_name[kept++] = m->out_name[i];
    } else if (m->o.log) {
      bool loss = false;
      for (int k = 0; k < g->n_losses; k++) loss |= g->losses[k].node == m->out[i] && !strcmp(g->losses[k].name, m->out_name[i]);
      fprintf(m->o.log, "kiln: %s \"%s\" skipped: its inputs are not all given\n", loss ? "loss" : "output",
              m->out_name[i]);
    }
  }
  m->n_out = kept;
  bool ok = true;
  if (kept == 0) {
    char missing[1024] = "";
    for (int i = 0; i < nn; i++)
      if (g->nodes[i]->op == IR_OP_INPUT && !given[i])
        snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s\"%s\"",
                 missing[0] ? ", " : "", g->nodes[i]->name);
    ok = diag_error(d, "%s: no output can be computed; missing inputs: %s", f->path, missing);
  }
  free(given);
  free(avail);
  return ok;
}

// Per node: is it a selected output (or, for the trainer, a parameter)?
static bool *wanted(const KilnModel *m) {
  bool *want = calloc((size_t)m->g.n_nodes + 1, sizeof *want);
  for (int k = 0; want && k < m->n_out; k++) want[m->out[k]->id] = true;
  for (int i = 0; want && m->want_params && i < m->g.n_nodes; i++) want[i] |= m->g.nodes[i]->op == IR_OP_PARAM;
  return want;
}

// The compiler's options for m: the ones kiln_compile compiles with, and kiln_memory_plan plans.
static CgOptions compile_options(const KilnModel *m) {
  return (CgOptions){.dump_dir = m->o.dump_llvm, .training = m->o.training || m->o.grad_loss,
                     .pack_each_run = m->o.grad_loss != NULL,  // the trainer changes them every step
                     .no_memplan = m->no_memplan, .max_memory = m->o.max_memory,
                     .tuning = m->o.tuning,
                     .cache = {m->o.cache_dir, m->o.cache_bytes, m->o.log}};
}

bool kiln_memory_plan(const KilnModel *m, KilnMemory *out, Diag *d) {
  bool *want = wanted(m);
  if (!want) return diag_error(d, "out of memory");
  CgOptions copt = compile_options(m);
  bool ok = kiln_memory_of(&m->g, want, &copt, out, d);
  free(want);
  return ok;
}

bool kiln_compile(KilnModel *m, Diag *d) {
  if (m->compiled) return true;
  bool *want = wanted(m);
  if (!want || !(m->need = cg_needed(&m->g, want))) {
    free(want);
    return diag_error(d, "out of memory");
  }
  if (!kiln_is_jit(m)) {
    free(want);
    ir_values_init(&m->vals, &m->g);
    m->compiled = true;
    return true;
  }
  CgOptions copt = compile_options(m);
  bool ok = cg_compile(&m->g, want, &copt, &m->p, d);
  free(want);
  if (!ok) return false;
  m->compiled = true;
  if (m->o.log)
    fprintf(m->o.log, "kiln: compiled %d kernels, %d steps in %.0f ms (lowering %.0f, LLVM %.0f; "
            "cache: %d hits, %d misses)\n", m->p.n_kernels, m->p.plan.n_steps, m->p.compile_ms,
            m->p.lower_ms, m->p.llvm_ms, m->p.cache_hits, m->p.cache_misses);
  return true;
}

KilnStats kiln_stats(const KilnModel *m) {
  if (!m->compiled || !kiln_is_jit(m)) return (KilnStats){.threads = m->threads};
  return (KilnStats){.threads = m->threads, .kernels = m->p.n_kernels, .steps = m->p.plan.n_steps, .compile_ms = m->p.compile_ms,
                     .lower_ms = m->p.lower_ms, .llvm_ms = m->p.llvm_ms,
                     .cache_hits = m->p.cache_hits, .cache_misses = m->p.cache_misses};
}

// ---------------------------------------------------------------------------------------
// Binding.

static bool need_compiled(const KilnModel *m, const char *what, Diag *d) {
  return m->compiled || diag_error(d, "%s before kiln_compile (API misuse)", what);
}

// Marks every parameter, or the inputs given (node id -> bound), as having values.
static void mark(KilnModel *m, IrOpKind op, const bool *given) {
  int n = op == IR_OP_PARAM ? m->n_params : m->n_inputs;
  const IrNode **nodes = op == IR_OP_PARAM ? m->params : m->inputs;
  for (int k = 0; k < n; k++)
    if (!given || given[nodes[k]->id]) m->bound[nodes[k]->id] = true;
}

// The weights held only in their packed form get buffers again (to be written).
static bool restore(KilnModel *m, Diag *d) { return !kiln_is_jit(m) || rt_instance_restore(&m->p.inst, d); }

// Node n's buffer was released after packing (see rt_instance_prepare): its values are gone.
static bool released(const KilnModel *m, const IrNode *n) {
  return kiln_is_jit(m) && m->compiled && rt_instance_released(&m->p.inst, n->id);
}

bool kiln_bind_params(KilnModel *m, const StFile *f, Diag *d) {
  if (!need_compiled(m, "kiln_bind_params", d) || !restore(m, d)) return false;
  m->prepared = false;
  bool ok = kiln_is_jit(m) ? fe_bind_native(&m->g, f, IR_OP_PARAM, m->p.value, NULL, m->o.log, d)
                   : fe_bind_weights(&m->g, f, &m->vals, m->o.log, d);
  if (ok) mark(m, IR_OP_PARAM, NULL);
  return ok;
}

bool kiln_init_params(KilnModel *m, uint64_t seed, Diag *d) {
  if (!need_compiled(m, "kiln_init_params", d) || !restore(m, d)) return false;
  m->prepared = false;
  bool ok = kiln_is_jit(m) ? fe_init_native(&m->g, seed, m->p.value, d) : fe_init_params(&m->g, seed, &m->vals, d);
  if (ok) mark(m, IR_OP_PARAM, NULL);
  return ok;
}

bool kiln_bind_inputs(KilnModel *m, const StFile *f, Diag *d) {
  if (!need_compiled(m, "kiln_bind_inputs", d)) return false;
  bool *given = calloc((size_t)m->g.n_nodes + 1, sizeof *given);
  if (!given) return diag_error(d, "out of memory");
  bool ok = kiln_is_jit(m) ? fe_bind_native(&m->g, f, IR_OP_INPUT, m->p.value, given, m->o.log, d)
                   : fe_bind_inputs(&m->g, f, &m->vals, given, m->o.log, d);
  if (ok) mark(m, IR_OP_INPUT, given);
  m->inputs_path = f->path;
  free(given);
  return ok;
}

void kiln_default_inputs(KilnModel *m) {
  if (!m->compiled) return;
  const IrGraph *g = &m->g;
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_INPUT || m->bound[i]) continue;
    size_t count = (size_t)ir_numel(&n->shape);
    double v = n->dtype == DT_F32 ? 1.0 : 0.0;
    if (kiln_is_jit(m)) {
      if (!m->p.value[i]) continue;
      for (size_t k = 0; k < count; k++) dt_store(n->dtype, m->p.value[i], k, v);
    } else {
      free(m->vals.v[i]);
      m->vals.v[i] = malloc(count * sizeof(double) + 1);
      for (size_t k = 0; m->vals.v[i] && k < count; k++) m->vals.v[i][k] = v;
    }
    m->bound[i] = true;
  }
}

// ---------------------------------------------------------------------------------------
// Running.

// An input or parameter a selected output needs that nothing bound would be read as garbage.
static bool check_bound(KilnModel *m, Diag *d) {
  bool ok = true;
  for (int k = 0; k < m->n_inputs + m->n_params && ok; k++) {
    const IrNode *n = k < m->n_inputs ? m->inputs[k] : m->params[k - m->n_inputs];
    if (!m->need[n->id] || m->bound[n->id]) continue;
    if (n->op == IR_OP_PARAM)
      ok = diag_error(d, "%s: parameter \"%s\" has no value: bind weights first", m->g.file, n->name);
    else
      ok = diag_error(d, "%s: input \"%s\" is missing; the %s it", m->inputs_path ? m->inputs_path : m->g.file,
                      n->name, m->o.grad_loss ? "loss needs" : "outputs need");
  }
  return ok;
}

static bool run(KilnModel *m, uint64_t seed, double *step_ms, const KilnRunPhase *ph, Diag *d) {
  if (!need_compiled(m, "kiln_run", d) || !check_bound(m, d)) return false;
  if (ph && !kiln_is_jit(m)) return diag_error(d, "a run in phases needs the JIT backend");
  if (!kiln_is_jit(m)) {
    bool *want = wanted(m);
    if (!want) return diag_error(d, "out of memory");
    IrEvalMode mode = {.training = m->o.training || m->o.grad_loss, .seed = seed};
    bool ok = rt_memory_fits(ir_eval_bytes(&m->g, &m->vals, want), m->o.max_memory,
                             "the reference evaluator (a double for every element of every value)", d) &&
              ir_eval(&m->g, &m->vals, want, &mode, d);
    free(want);
    return ok;
  }
  // Packs the weights; the ones only packing reads are then held packed only (kiln_tensor
  // refuses them, binding brings them back), but in a trainer, which reads and writes them.
  if (!m->prepared) rt_instance_prepare(&m->p.inst, m->threads, !m->want_params);
  m->prepared = true;
  m->p.seed[0] = seed;
  m->p.seed[1] = ph ? ph->share : 0;
  if (ph) {
    rt_plan_run_phase(&m->p.plan, m->threads, ph->phase, ph->which, ph->after, ph->ctx);
  } else if (step_ms) {
    rt_plan_run_profiled(&m->p.plan, m->threads, step_ms);
  } else if (m->trace) {
    rt_plan_run_traced(&m->p.plan, m->threads, m->trace);
  } else {
    rt_plan_run(&m->p.plan, m->threads);
  }
  return cg_program_status(&m->p, d);
}

bool kiln_run(KilnModel *m, uint64_t seed, Diag *d) { return run(m, seed, NULL, NULL, d); }

bool kiln_run_phase(KilnModel *m, uint64_t seed, const KilnRunPhase *ph, Diag *d) {
  return run(m, seed, NULL, ph, d);
}

bool kiln_run_profiled(KilnModel *m, uint64_t seed, double *step_ms, Diag *d) {
  if (!kiln_is_jit(m)) return diag_error(d, "profiles need the JIT backend");
  return run(m, seed, step_ms, NULL, d);
}

KilnStep kiln_step(const KilnModel *m, int s, char *label_buf, size_t label_size) {
  const RtProgramStep *st = &m->p.prog.steps[s];
  const IrNode *n = m->g.nodes[st->node];
  return (KilnStep){.node = n->name, .label = ir_op_label(n, label_buf, label_size),
                    .kernel = st->kernel, .once = st->once};
}

// ---------------------------------------------------------------------------------------
// Reading.

bool kiln_tensor(KilnModel *m, const char *name, StTensor *t, Diag *d) {
  int k = 0;
  while (k < m->n_out && strcmp(m->out_name[k], name) != 0) k++;
  const IrNode *n = k < m->n_out ? m->out[k] : ir_graph_find(&m->g, name);
  bool held = k < m->n_out || (n && (n->op == IR_OP_INPUT || n->op == IR_OP_PARAM) && m->compiled &&
                               (kiln_is_jit(m) ? m->p.value[n->id] != NULL : m->vals.v[n->id] != NULL));
  if (!held && n && released(m, n))
    return diag_error(d, "%s: parameter \"%s\" is held only in its packed form after a run (bind the "
                      "weights again to read it)", m->g.file, name);
  if (!held) return diag_error(d, "%s: no selected output named \"%s\"", m->g.file, name);
  size_t count = (size_t)ir_numel(&n->shape);
  *t = (StTensor){.name = k < m->n_out ? (char *)m->out_name[k] : (char *)n->name, .dtype = n->dtype,
                  .rank = n->shape.rank, .nbytes = count * dt_size(n->dtype)};
  for (int i = 0; i < n->shape.rank; i++) t->shape[i] = n->shape.dim[i];
  if (kiln_is_jit(m)) {
    if (!m->compiled) return diag_error(d, "%s: \"%s\" read before kiln_compile (API misuse)", m->g.file, name);
    t->data = m->p.value[n->id];
    if (n->op == IR_OP_PARAM) m->prepared = false;  // the caller may write it
    return true;
  }
  if (!m->vals.v || !m->vals.v[n->id]) return diag_error(d, "%s: output \"%s\" has not been computed", m->g.file, name);
  free(m->out_buf);
  m->out_buf = malloc(t->nbytes + 1);
  if (!m->out_buf) return diag_error(d, "out of memory");
  for (size_t i = 0; i < count; i++) dt_store(n->dtype, m->out_buf, i, m->vals.v[n->id][i]);
  t->data = m->out_buf;
  return true;
}

bool kiln_copy_params(KilnModel *dst, KilnModel *src, Diag *d) {
  if (!kiln_is_jit(dst) || !kiln_is_jit(src) || !dst->compiled || !src->compiled)
    return diag_error(d, "kiln_copy_params: both models must be compiled on the JIT (API misuse)");
  if (!restore(dst, d)) return false;
  for (int i = 0; i < dst->g.n_nodes; i++) {
    const IrNode *n = dst->g.nodes[i];
    if (n->op != IR_OP_PARAM || !dst->p.value[i]) continue;
    const IrNode *s = ir_graph_find(&src->g, n->name);
    if (s && released(src, s))
      return diag_error(d, "%s: parameter \"%s\" is held only in its packed form", src->g.file, n->name);
    if (!s || s->op != IR_OP_PARAM || s->dtype != n->dtype || !ir_shape_eq(&s->shape, &n->shape) || !src->p.value[s->id])
      return diag_error(d, "%s: parameter \"%s\" is not in %s with the same shape and dtype", dst->g.file,
                        n->name, src->g.file);
    memcpy(dst->p.value[i], src->p.value[s->id], (size_t)ir_numel(&n->shape) * dt_size(n->dtype));
    dst->bound[i] = true;
  }
  dst->prepared = false;
  return true;
}

double kiln_config(const KilnModel *m, const char *name, double def) { return ir_graph_config(&m->g, name, def); }

bool kiln_write_outputs(KilnModel *m, const char *path, Diag *d) {
  if (kiln_is_jit(m)) return fe_write_native(path, m->out, m->out_name, m->n_out, m->p.value, DT_F32, d);
  return fe_write_values(path, m->out, m->out_name, m->n_out, &m->vals, DT_F32, d);
}

bool kiln_write_params(KilnModel *m, const char *path, Diag *d) {
  return kiln_write_params_as(m, path, DT_F32, d);
}

bool kiln_write_params_as(KilnModel *m, const char *path, int floats, Diag *d) {
  if (floats != DT_F32 && floats != DT_BF16)
    return diag_error(d, "parameters are written as f32 or bf16, not %s", dt_name((DType)floats));
  for (int i = 0; i < m->n_params; i++)
    if (released(m, m->params[i]))
      return diag_error(d, "%s: parameter \"%s\" is held only in its packed form after a run", m->g.file,
                        m->params[i]->name);
  const char **names = calloc((size_t)m->n_params + 1, sizeof *names);
  if (!names) return diag_error(d, "out of memory");
  for (int i = 0; i < m->n_params; i++) names[i] = m->params[i]->name;
  bool ok = kiln_is_jit(m) ? fe_write_native(path, m->params, names, m->n_params, m->p.value, floats, d)
                           : fe_write_values(path, m->params, names, m->n_params, &m->vals, floats, d);
  free(names);
  return ok;
}
