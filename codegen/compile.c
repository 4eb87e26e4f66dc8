// Compiling a graph for the JIT (see compile.h): lowering, JIT loading, buffers, plan.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/compile.h"
#include "codegen/lower.h"
#include "runtime/timing.h"

bool cg_kernel_name(Cg *cg, const IrNode *n, const char *extra, char *buf, size_t size) {
  uint64_t h = 1469598103934665603ull;
#define MIX(x) h = (h ^ (uint64_t)(x)) * 1099511628211ull
  MIX(n->op);
  MIX(n->dtype);
  MIX(n->shape.rank);
  for (int i = 0; i < n->shape.rank; i++) MIX(n->shape.dim[i]);
  MIX(n->n_in);
  for (int k = 0; k < n->n_in; k++) {
    MIX(n->in[k]->dtype);
    MIX(n->in[k]->shape.rank);
    for (int i = 0; i < n->in[k]->shape.rank; i++) MIX(n->in[k]->shape.dim[i]);
  }
  for (int a = 0; a < ir_op_n_attrs(n->op); a++) {
    uint64_t fbits;
    memcpy(&fbits, &n->attr[a].f, sizeof fbits);
    MIX(n->attr[a].i);
    MIX(fbits);
    MIX(n->attr[a].n);
    for (int i = 0; i < n->attr[a].n; i++) MIX(n->attr[a].ints[i]);
  }
  for (const char *s = extra ? extra : ""; *s; s++) MIX(*s);
#undef MIX
  snprintf(buf, size, "%s_%016llx", ir_ops[n->op].name, (unsigned long long)h);
  return LLVMGetNamedFunction(cg->mod, buf) != NULL;
}

bool *cg_needed(const IrGraph *g, const bool *want) {
  int nn = g->n_nodes;
  bool *need = calloc((size_t)nn + 1, sizeof *need);
  if (!need) return NULL;
  for (int i = 0; i < nn; i++) need[i] = want ? want[i] : true;
  for (int i = nn - 1; i >= 0; i--)
    if (need[i])
      for (int k = 0; k < g->nodes[i]->n_in; k++) need[g->nodes[i]->in[k]->id] = true;
  return need;
}

bool cg_lower_program(Cg *cg, const IrGraph *g, const bool *need, CgSteps *steps, Diag *d) {
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (!need[i] || (ir_ops[n->op].flags & IR_FLAG_SOURCE && n->op != IR_OP_FULL && n->op != IR_OP_IOTA))
      continue;
    if (ir_op_is_view(n->op)) continue;  // shares its input's buffer: no kernel
    if (!cg_lowerings[n->op])
      return diag_error(d, "%s \"%s\": the JIT cannot lower %s yet", n->where, n->name, ir_ops[n->op].name);
    if (!cg_lowerings[n->op](cg, n, steps, d)) return false;
  }
  return true;
}

bool cg_memory_stats(const IrGraph *g, const bool *want, const CgOptions *opt, MemStats *st,
                     int *n_steps, Diag *d) {
  bool *need = cg_needed(g, want);
  if (!need) return diag_error(d, "out of memory");
  Cg cg;
  CgSteps steps = {0};
  CgMemory mem = {0};
  bool ok = cg_init(&cg, "kiln", opt, d);
  if (ok) {
    ok = cg_lower_program(&cg, g, need, &steps, d) && cg_memory_plan(g, need, want, &steps, &mem, d);
    cg_dispose(&cg);
  }
  if (ok) {
    *st = mem.stats;
    *n_steps = steps.n;
  }
  cg_memory_free(&mem);
  free(steps.v);
  free(need);
  return ok;
}

// The bytes the planned program will allocate (the arena, or every buffer unplanned, plus
// the buffers of parameters and inputs) against opt->max_memory, or physical memory.
static bool memory_fits(const IrGraph *g, const bool *need, const CgOptions *opt,
                        const CgMemory *mem, Diag *d) {
  uint64_t limit = opt->max_memory ? opt->max_memory : rt_physical_memory();
  uint64_t bytes = opt->no_memplan ? mem->stats.unplanned_bytes : mem->stats.arena_bytes;
  for (int i = 0; i < g->n_nodes && !opt->no_memplan; i++)
    if (need[i] && mem->node_offset[i] == CG_NO_OFFSET && !ir_op_is_view(g->nodes[i]->op))
      bytes += mem->node_bytes[i];
  if (!limit || bytes <= limit) return true;
  return diag_error(d, "the program needs %llu bytes of memory (%.1f MiB), more than the limit "
                    "of %llu bytes (%s); raise it with --max-memory SIZE", (unsigned long long)bytes,
                    (double)bytes / (1 << 20), (unsigned long long)limit,
                    opt->max_memory ? "--max-memory" : "the machine's physical memory");
}

bool cg_compile(const IrGraph *g, const bool *want, const CgOptions *opt, CgProgram *p, Diag *d) {
  double t0 = rt_now_ms();
  memset(p, 0, sizeof *p);
  p->g = g;
  int nn = g->n_nodes;
  bool *need = cg_needed(g, want);
  Cg cg;
  CgSteps steps = {0};
  bool ok = need && cg_init(&cg, "kiln", opt, d) && cg_lower_program(&cg, g, need, &steps, d);
  if (!need) ok = diag_error(d, "out of memory");
  double t1 = rt_now_ms();
  CgMemory mem = {0};  // planned before LLVM compiles anything: a program too big stops here
  if (ok) ok = cg_memory_plan(g, need, want, &steps, &mem, d) && memory_fits(g, need, opt, &mem, d);
  if (ok) {
    for (LLVMValueRef f = LLVMGetFirstFunction(cg.mod); f; f = LLVMGetNextFunction(f))
      if (!LLVMIsDeclaration(f)) p->n_kernels++;
    ok = cg_jit(&cg, &p->jit, d);
  } else if (need && cg.mod) {
    cg_dispose(&cg);
  }

  double t2 = rt_now_ms();
  if (ok) {
    bool planned = !opt->no_memplan, poison = opt->tuning.poison_buffers;
    p->mem = mem.stats;
    p->value = calloc((size_t)nn + 1, sizeof *p->value);
    p->bytes = calloc((size_t)nn + 1, sizeof *p->bytes);
    p->offset = calloc((size_t)nn + 1, sizeof *p->offset);
    p->status = rt_alloc_buffer(4 * sizeof(int64_t), poison);
    if (p->status) memset(p->status, 0, 4 * sizeof(int64_t));
    p->seed = rt_alloc_buffer(sizeof *p->seed, poison);
    if (p->seed) *p->seed = 0;
    if (!p->status || !p->seed || !p->value || !p->bytes || !p->offset)
      ok = diag_error(d, "out of memory for the plan's status");
    p->alias = calloc((size_t)nn + 1, sizeof *p->alias);
    if (ok && planned) {
      p->arena_bytes = mem.stats.arena_bytes;
      if (!(p->arena = rt_alloc_buffer(p->arena_bytes, poison)))
        ok = diag_error(d, "out of memory for the arena (%zu bytes)", p->arena_bytes);
    }
    for (int i = 0; i < nn && ok; i++) {
      p->offset[i] = planned ? mem.node_offset[i] : CG_NO_OFFSET;
      if (!need[i]) continue;
      const IrNode *n = g->nodes[i];
      p->bytes[i] = mem.node_bytes[i];
      if (ir_op_is_view(n->op)) {  // same elements in the same order: one buffer
        p->value[i] = p->value[n->in[0]->id];
        p->alias[i] = true;
        continue;
      }
      if (p->offset[i] != CG_NO_OFFSET) p->value[i] = (char *)p->arena + p->offset[i];
      else p->value[i] = rt_alloc_buffer(p->bytes[i], poison);
      if (!p->value[i]) ok = diag_error(d, "out of memory for \"%s\" (%zu bytes)", n->name, p->bytes[i]);
    }
    p->n_scratch = steps.n_scratch;
    p->scratch = calloc((size_t)p->n_scratch + 1, sizeof *p->scratch);
    p->scratch_offset = malloc(((size_t)p->n_scratch + 1) * sizeof *p->scratch_offset);
    size_t *sbytes = calloc((size_t)p->n_scratch + 1, sizeof *sbytes);
    for (int k = 0; k < p->n_scratch && ok; k++) {
      sbytes[k] = mem.scratch_bytes[k];
      p->scratch_offset[k] = planned ? mem.scratch_offset[k] : CG_NO_OFFSET;
      p->scratch[k] =
          planned ? (char *)p->arena + mem.scratch_offset[k] : rt_alloc_buffer(sbytes[k], poison);
      if (!p->scratch[k]) ok = diag_error(d, "out of memory for scratch");
    }
    p->scratch_bytes = sbytes;
    p->plan.steps = calloc((size_t)steps.n + 1, sizeof *p->plan.steps);
    p->step_bufs = calloc((size_t)steps.n * CG_MAX_ARGS + 1, sizeof *p->step_bufs);
    p->step_node = calloc((size_t)steps.n + 1, sizeof *p->step_node);
    for (int s = 0; s < steps.n && ok; s++) {
      CgStep *st = &steps.v[s];
      RtStep *rs = &p->plan.steps[p->plan.n_steps++];
      void *fn = cg_jit_lookup(p->jit, st->fn);
      memcpy(&rs->fn, &fn, sizeof fn);  // object to function pointer without a cast
      if (!fn) {
        ok = diag_error(d, "internal error: kernel %s was not emitted", st->fn);
        break;
      }
      rs->bufs = &p->step_bufs[s * CG_MAX_ARGS];
      rs->work = st->work;
      rs->once = st->once;
      rs->name = g->nodes[st->node]->name;
      p->step_node[s] = st->node;
      for (int a = 0; a < st->n_args; a++) {
        CgArg arg = st->args[a];
        rs->bufs[a] = arg.kind == CG_ARG_NODE      ? p->value[arg.id]
                      : arg.kind == CG_ARG_SCRATCH ? p->scratch[arg.id]
                      : arg.kind == CG_ARG_SEED    ? (void *)p->seed
                                                   : (void *)p->status;
      }
    }
  }
  cg_memory_free(&mem);
  p->steps = steps;  // kept: the symbolic plan (AOT emission and memory reports read it)
  free(need);
  p->compile_ms = rt_now_ms() - t0;
  p->lower_ms = t1 - t0;
  p->llvm_ms = t2 - t1;
  if (!ok) cg_program_free(p);
  return ok;
}

bool cg_program_status(const CgProgram *p, Diag *d) {
  int64_t code = p->status[0];
  if (code == CG_STATUS_OK) return true;
  const IrNode *n = p->g->nodes[p->status[1]];
  long long value = (long long)p->status[2], index = (long long)p->status[3];
  memset(p->status, 0, 4 * sizeof *p->status);  // the next run starts clean
  if (code == CG_STATUS_INDEX_RANGE) {  // gather: the data's axis; scatter_add: the output's
    const IrShape *ranged = n->op == IR_OP_SCATTER_ADD ? &n->shape : &n->in[0]->shape;
    int64_t axis = ir_attr_int(n, "axis");
    if (axis < 0) axis += ranged->rank;
    return diag_error(d, "%s \"%s\": %s: index %lld out of range [0, %lld) at element %lld",
                      n->where, n->name, ir_ops[n->op].name, value,
                      (long long)ranged->dim[axis], index);
  }
  if (code == CG_STATUS_CAST_RANGE || code == CG_STATUS_TARGET_RANGE) {
    uint32_t bits = (uint32_t)value;
    float f;
    memcpy(&f, &bits, sizeof f);
    if (code == CG_STATUS_TARGET_RANGE)
      return diag_error(d, "%s \"%s\": %s: target element %lld is %g; a target must be a "
                        "probability, >= 0", n->where, n->name, ir_ops[n->op].name, index, (double)f);
    return diag_error(d, "%s \"%s\": %s: element %lld is %g, which %s cannot hold", n->where,
                      n->name, ir_ops[n->op].name, index, (double)f, dt_name(n->dtype));
  }
  if (code == CG_STATUS_INT_OVERFLOW)
    return diag_error(d, "%s \"%s\": %s: element %lld overflows: %s cannot hold the result",
                      n->where, n->name, ir_ops[n->op].name, index, dt_name(n->dtype));
  const IrShape *logits = &n->in[0]->shape;  // cross_entropy: classes are the last dim
  return diag_error(d, "%s \"%s\": %s: label %lld out of range [0, %lld) at element %lld",
                    n->where, n->name, ir_ops[n->op].name, value,
                    (long long)logits->dim[logits->rank - 1], index);
}

void cg_program_free(CgProgram *p) {
  if (p->value)  // buffers of their own: not aliases, not in the arena
    for (int i = 0; i < p->g->n_nodes; i++)
      if ((!p->alias || !p->alias[i]) && (!p->offset || p->offset[i] == CG_NO_OFFSET)) free(p->value[i]);
  free(p->alias);
  for (int k = 0; k < p->n_scratch && p->scratch; k++)
    if (!p->scratch_offset || p->scratch_offset[k] == CG_NO_OFFSET) free(p->scratch[k]);
  free(p->arena);
  free(p->offset);
  free(p->scratch_offset);
  free(p->value);
  free(p->bytes);
  free(p->scratch);
  free(p->scratch_bytes);
  free(p->steps.v);
  free(p->status);
  free(p->seed);
  free(p->plan.steps);
  free(p->step_bufs);
  free(p->step_node);
  cg_jit_free(p->jit);
  memset(p, 0, sizeof *p);
}
