// Compiling a graph for the JIT (see compile.h): lowering, JIT loading, buffers, plan.
#include <stdio.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/compile.h"
#include "codegen/lower.h"
#include "codegen/lower_rows.h"
#include "runtime/timing.h"
#include "runtime/tuning.h"

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

bool cg_kernel_name_of(Cg *cg, const char *prefix, const int64_t *v, int n, char *buf, size_t size) {
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < n; i++) h = (h ^ (uint64_t)v[i]) * 1099511628211ull;
  snprintf(buf, size, "%s_%016llx", prefix, (unsigned long long)h);
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

// Nodes that a needed bf16 GEMM reads as its A, 2-D with contiguous rows (cg->bf16_a).
static bool *bf16_a_nodes(const IrGraph *g, const bool *need) {
  bool *is = calloc((size_t)g->n_nodes + 1, sizeof *is);
  for (int i = 0; is && i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i], *mm = NULL, *a = NULL;
    if (!need[i]) continue;
    if (n->op == IR_OP_MATMUL) {
      mm = n, a = n->in[0];
    } else if (n->op == IR_OP_FUSED && ir_attr_int(n, "kind") == IR_FUSED_GEMM && n->body->gemm) {
      mm = n->body->nodes[n->body->gemm->matmul];
      a = n->in[mm->in[0]->id];
    }
    if (!mm || !ir_attr_int(mm, "bf16")) continue;
    CgGemm gg;
    cg_plan_matmul(mm, &gg);
    if (gg.nbatch == 0 && gg.a_cs == 1 && gg.a_rs == gg.K) is[a->id] = true;
  }
  return is;
}

bool cg_lower_program(Cg *cg, const IrGraph *g, const bool *need, CgSteps *steps, Diag *d) {
  bool *bf16_a = cg->training ? NULL : bf16_a_nodes(g, need);
  cg->bf16_a = bf16_a;
  bool ok = true;
  for (int i = 0; ok && i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (!need[i] || (ir_ops[n->op].flags & IR_FLAG_SOURCE && n->op != IR_OP_FULL && n->op != IR_OP_IOTA))
      continue;
    if (ir_op_is_view(n->op)) continue;  // shares its input's buffer: no kernel
    if (!cg_lowerings[n->op]) {
      ok = diag_error(d, "%s \"%s\": the JIT cannot lower %s yet", n->where, n->name, ir_ops[n->op].name);
      break;
    }
    cg->quick = cg_quick_ops[n->op];
    ok = cg_lowerings[n->op](cg, n, steps, d);
    cg->quick = false;
  }
  cg->bf16_a = NULL;
  free(bf16_a);
  return ok;
}

bool cg_memory_stats(const IrGraph *g, const bool *want, const CgOptions *opt, MemStats *st, CgResident *res,
                     int *n_steps, Diag *d) {
  bool *need = cg_needed(g, want);
  if (!need) return diag_error(d, "out of memory");
  Cg cg;
  CgSteps steps = {0};
  RtProgram prog = {0};
  bool ok = cg_init(&cg, "kiln", opt, d), described = false;
  if (ok) {
    ok = cg_lower_program(&cg, g, need, &steps, d) &&
         (described = cg_describe(g, need, want, &steps, true, &prog, st, d));
    cg_dispose(&cg);
  }
  if (ok) *n_steps = steps.n;
  if (ok && res) {
    *res = (CgResident){0};
    rt_program_weight_bytes(&prog, &res->pack_only, &res->params, &res->largest_pack_only);
    for (int k = 0; k < prog.n_inputs; k++)
      if (prog.inputs[k].buf >= 0 && prog.bufs[prog.inputs[k].buf].kind == RT_BUF_OWN)
        res->inputs += prog.bufs[prog.inputs[k].buf].bytes;
    bool *seen = calloc((size_t)steps.n_scratch + 1, sizeof *seen);
    if (!seen) ok = diag_error(d, "out of memory");
    for (int s = 0; seen && s < steps.n; s++)
      for (int a = 0; steps.v[s].once && a < steps.v[s].n_args; a++) {
        const CgArg *x = &steps.v[s].args[a];
        if (x->kind == CG_ARG_SCRATCH && !seen[x->id]) seen[x->id] = true, res->packed += x->bytes;
      }
    free(seen);
  }
  if (described) cg_describe_free(&prog);
  cg_steps_free(&steps);
  free(need);
  return ok;
}

// Points every step of the description at its kernel in the JIT.
static bool link_kernels(RtProgram *prog, CgJit *jit, Diag *d) {
  RtProgramStep *st = (RtProgramStep *)prog->steps;  // cg_describe's own allocation
  for (int s = 0; s < prog->n_steps; s++) {
    void *fn = cg_jit_lookup(jit, st[s].kernel);
    if (!fn) return diag_error(d, "internal error: kernel %s was not emitted", st[s].kernel);
    memcpy(&st[s].fn, &fn, sizeof fn);  // object to function pointer without a cast
  }
  return true;
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
  // Described and planned before LLVM compiles anything: a program too big stops here.
  if (ok) ok = cg_describe(g, need, want, &steps, !opt->no_memplan, &p->prog, &p->mem, d) &&
               rt_memory_fits(rt_program_bytes(&p->prog), opt->max_memory, "the program", d);
  if (ok) {
    for (LLVMValueRef f = LLVMGetFirstFunction(cg.mod); f; f = LLVMGetNextFunction(f))
      if (!LLVMIsDeclaration(f)) p->n_kernels++;
    ok = cg_jit(&cg, &p->jit, d);
  } else if (need && cg.mod) {
    cg_dispose(&cg);
  }

  double t2 = rt_now_ms();
  if (ok) cg_jit_cache_counts(p->jit, &p->cache_hits, &p->cache_misses);
  if (ok)
    ok = link_kernels(&p->prog, p->jit, d) &&
         rt_instance_create(&p->prog, opt->tuning.poison_buffers, &p->inst, d);
  if (ok) {
    p->plan = p->inst.plan;
    p->value = p->inst.buf;  // node ids are the first buffer ids
    p->status = p->inst.status;
    p->seed = p->inst.seed;
    p->arena_bytes = p->prog.arena_bytes;
    p->n_scratch = steps.n_scratch;
    p->bytes = calloc((size_t)nn + 1, sizeof *p->bytes);
    p->scratch_bytes = calloc((size_t)p->n_scratch + 1, sizeof *p->scratch_bytes);
    if (!p->bytes || !p->scratch_bytes) ok = diag_error(d, "out of memory");
    for (int i = 0; ok && i < nn; i++) p->bytes[i] = p->prog.bufs[i].bytes;
    for (int k = 0; ok && k < p->n_scratch; k++) p->scratch_bytes[k] = p->prog.bufs[nn + k].bytes;
  }
  p->steps = steps;  // kept: the symbolic plan (the description names its kernels)
  free(need);
#ifdef __GLIBC__
  // LLVM's optimisation and code generation freed their memory into malloc's heap; give it
  // back, or it stays resident under the weights bound next (a cold compile of a small
  // model: ~30 MB of 190).
  malloc_trim(0);
#endif
  p->compile_ms = rt_now_ms() - t0;
  p->lower_ms = t1 - t0;
  p->llvm_ms = t2 - t1;
  if (!ok) cg_program_free(p);
  return ok;
}

bool cg_program_status(const CgProgram *p, Diag *d) { return rt_program_status(&p->prog, p->status, d); }

void cg_program_free(CgProgram *p) {
  if (p->inst.p) rt_instance_free(&p->inst);
  cg_describe_free(&p->prog);
  free(p->bytes);
  free(p->scratch_bytes);
  cg_steps_free(&p->steps);
  cg_jit_free(p->jit);
  memset(p, 0, sizeof *p);
}
