// Compiling a module's kernels to object files on several threads (see cg.h): the module's
// functions are split into groups (a kernel and the internal helpers it calls), the groups
// into units (each compiled to one object) and the units into parts, one a thread, balanced
// by instruction count. A part's thread reads the module's bitcode into a context of its
// own, keeps its units' functions, optimises them (CG_PASSES; CG_PASSES_QUICK on a copy
// holding its quick units) and compiles (a target machine of its own) each unit, halving the
// optimised module by copies (LLVMCloneModule) until a copy holds one unit.
// Every function is optimised alone (kernels never call each other), so a kernel's code is
// what the optimiser makes of it in the whole module. Without the compile cache a part is
// one unit; with it, each group is a unit of its own, looked up by its key (codegen/cache.c)
// and stored when compiled, so a graph edit compiles only the groups it changed. A unit's
// groups are all quick (CG_QUICK_ATTR: optimised with CG_PASSES_QUICK) or none is: without
// the cache each part is two units, its quick groups and the others.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen/cg.h"

#define MAX_THREADS 64

typedef struct Part {
  const Cg *cg;               // triple, cpu, features (read only)
  const char *bc;             // the whole module's bitcode
  size_t bc_size;
  char **names;               // the defined functions, sorted by name
  const int *unit_of;         // ... and the unit of each (-1: none, from the cache)
  int n_names;
  int lo, mid, hi;            // this part's units: [lo, mid) CG_PASSES, [mid, hi) quick
  LLVMMemoryBufferRef *objs;  // out: objs[unit], for lo <= unit < hi
  char err[512];              // out: empty on success
} Part;

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int unit_of(const Part *p, const char *name) {
  const char *key = name;
  char **hit = bsearch(&key, p->names, (size_t)p->n_names, sizeof *p->names, by_name);
  return hit ? p->unit_of[hit - p->names] : -1;
}

// Deletes the functions of units outside [lo, hi): callers before the helpers they call.
static void keep_units(const Part *p, LLVMModuleRef mod, int lo, int hi) {
  for (bool changed = true; changed;) {
    changed = false;
    LLVMValueRef next;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = next) {
      next = LLVMGetNextFunction(f);
      size_t len;
      if (LLVMIsDeclaration(f) || LLVMGetFirstUse(f)) continue;
      int u = unit_of(p, LLVMGetValueName2(f, &len));
      if (u >= lo && u < hi) continue;
      LLVMDeleteFunction(f);
      changed = true;
    }
  }
}

static bool is_empty(LLVMModuleRef mod) {
  for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
    if (!LLVMIsDeclaration(f)) return false;
  return true;
}

// Compiles the optimised mod, which holds units [lo, hi), to one object per unit (none for
// a unit without functions); disposes mod.
static void emit_units(Part *p, LLVMTargetMachineRef tm, LLVMModuleRef mod, int lo, int hi) {
  if (hi - lo > 1 && !p->err[0]) {
    int mid = lo + (hi - lo) / 2;
    LLVMModuleRef first = LLVMCloneModule(mod);
    keep_units(p, first, lo, mid);
    emit_units(p, tm, first, lo, mid);
    keep_units(p, mod, mid, hi);
    emit_units(p, tm, mod, mid, hi);
    return;
  }
  char *err = NULL;
  if (!p->err[0] && !is_empty(mod) &&
      LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &err, &p->objs[lo])) {
    snprintf(p->err, sizeof p->err, "LLVM code generation failed: %s", err ? err : "");
    LLVMDisposeMessage(err);
    p->objs[lo] = NULL;
  }
  LLVMDisposeModule(mod);
}

// Optimises mod, which holds units [lo, hi), with `passes` once (every function is
// optimised alone: together or apart, the same code), then compiles each unit; disposes mod.
static void compile_units(Part *p, LLVMTargetMachineRef tm, LLVMModuleRef mod, int lo, int hi,
                          const char *passes) {
  if (!p->err[0] && !is_empty(mod)) {
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMErrorRef e = LLVMRunPasses(mod, passes, tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (e) {
      char *msg = LLVMGetErrorMessage(e);
      snprintf(p->err, sizeof p->err, "LLVM optimisation failed: %s", msg);
      LLVMDisposeErrorMessage(msg);
    }
  }
  emit_units(p, tm, mod, lo, hi);
}

static void *compile_part(void *arg) {
  Part *p = arg;
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRange(p->bc, p->bc_size, "kiln", 0);
  LLVMModuleRef mod = NULL;
  if (LLVMParseBitcodeInContext2(ctx, buf, &mod)) {
    snprintf(p->err, sizeof p->err, "cannot read back the module's bitcode");
    LLVMDisposeMemoryBuffer(buf);
    LLVMContextDispose(ctx);
    return NULL;
  }
  const Cg *cg = p->cg;
  LLVMTargetRef target;
  char *err = NULL;
  LLVMTargetMachineRef tm = NULL;
  if (LLVMGetTargetFromTriple(cg->triple, &target, &err) == 0)
    tm = LLVMCreateTargetMachine(target, cg->triple, cg->cpu, cg->features, LLVMCodeGenLevelAggressive,
                                 LLVMRelocPIC, LLVMCodeModelJITDefault);
  LLVMDisposeMessage(err);
  if (!tm) {
    snprintf(p->err, sizeof p->err, "cannot create a target machine for cpu %s", cg->cpu);
    LLVMDisposeModule(mod);
  } else {
    keep_units(p, mod, p->lo, p->hi);
    int hi = p->hi;
    if (p->mid > p->lo && p->mid < p->hi) {  // both kinds: the quick units on a copy
      LLVMModuleRef quick = LLVMCloneModule(mod);
      keep_units(p, quick, p->mid, p->hi);
      compile_units(p, tm, quick, p->mid, p->hi, CG_PASSES_QUICK);
      keep_units(p, mod, p->lo, p->mid);
      hi = p->mid;
    }
    compile_units(p, tm, mod, p->lo, hi, p->mid > p->lo ? CG_PASSES : CG_PASSES_QUICK);
    LLVMDisposeTargetMachine(tm);
  }
  LLVMDisposeMemoryBuffer(buf);
  LLVMContextDispose(ctx);
  return NULL;
}

// Union-find over function indices: a kernel and the helpers it calls are one group.
static int find(int *up, int i) {
  while (up[i] != i) i = up[i] = up[up[i]];
  return i;
}

// Each group's object from the cache (*hits), or -1 as the unit to compile it in: a unit
// per missing group. Returns the number of units.
static int look_up(const RtCacheOptions *cache, char (*key)[RT_CACHE_KEY_CHARS + 1], int n_groups,
                   LLVMMemoryBufferRef *hit, int *unit, int *hits) {
  int units = 0;
  for (int g = 0; g < n_groups; g++) {
    size_t size;
    void *data = rt_cache_get(cache, key[g], &size);
    hit[g] = data ? LLVMCreateMemoryBufferWithMemoryRangeCopy(data, size, key[g]) : NULL;
    free(data);
    if (hit[g]) ++*hits, unit[g] = -1;
    else unit[g] = units++;
  }
  return units;
}

// Items (groups or units) to `parts` parts, largest first, each to the lightest (LPT).
static void balance(const long *group_size, int n_groups, int parts, int *unit) {
  long load[MAX_THREADS] = {0};
  bool *done = calloc((size_t)n_groups + 1, sizeof *done);
  for (int k = 0; done && k < n_groups; k++) {
    int best = -1;
    for (int g = 0; g < n_groups; g++)
      if (!done[g] && (best < 0 || group_size[g] > group_size[best])) best = g;
    int light = 0;
    for (int q = 1; q < parts; q++)
      if (load[q] < load[light]) light = q;
    load[light] += group_size[best];
    unit[best] = light;
    done[best] = true;
  }
  for (int g = 0; !done && g < n_groups; g++) unit[g] = g % parts;  // out of memory: any order
  free(done);
}

bool cg_emit_objects(Cg *cg, int threads, const RtCacheOptions *cache, CgObjects *out, Diag *d) {
  memset(out, 0, sizeof *out);
  if (!cg_verify(cg, d)) return false;
  int n = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(cg->mod); f; f = LLVMGetNextFunction(f))
    n += !LLVMIsDeclaration(f);
  LLVMValueRef *fn = calloc((size_t)n + 1, sizeof *fn);
  int *up = calloc((size_t)n + 1, sizeof *up), *size = calloc((size_t)n + 1, sizeof *size);
  int *group = calloc((size_t)n + 1, sizeof *group), *unit = calloc((size_t)n + 1, sizeof *unit);
  long *group_size = calloc((size_t)n + 1, sizeof *group_size);
  bool *quick = calloc((size_t)n + 1, sizeof *quick);
  char **names = calloc((size_t)n + 1, sizeof *names);
  int *sorted_unit = calloc((size_t)n + 1, sizeof *sorted_unit);
  char(*key)[RT_CACHE_KEY_CHARS + 1] = calloc((size_t)n + 1, sizeof *key);
  LLVMMemoryBufferRef *hit = calloc((size_t)n + 1, sizeof *hit);
  LLVMMemoryBufferRef bc = NULL;
  Part *ps = NULL;
  bool ok = fn && up && size && group && unit && group_size && quick && names && sorted_unit && key && hit;
  if (!ok) diag_error(d, "out of memory");
  int k = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(cg->mod); ok && f; f = LLVMGetNextFunction(f))
    if (!LLVMIsDeclaration(f)) {
      up[k] = k;
      fn[k++] = f;
    }
  // Sizes and call edges (a function's index: its place in fn, found by a scan of callees).
  for (int i = 0; ok && i < n; i++)
    for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn[i]); bb; bb = LLVMGetNextBasicBlock(bb))
      for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in; in = LLVMGetNextInstruction(in)) {
        size[i]++;
        if (!LLVMIsACallInst(in)) continue;
        LLVMValueRef callee = LLVMGetCalledValue(in);
        if (!LLVMIsAFunction(callee) || LLVMIsDeclaration(callee)) continue;
        for (int j = 0; j < n; j++)
          if (fn[j] == callee) up[find(up, i)] = find(up, j);
      }
  // Groups numbered in the order of their first function; their sizes; quick or not (every
  // function of a quick group is marked: helpers copy their kernel's attributes). A quick
  // group's instructions count two thirds in the balance: O1 takes about that much less.
  int n_groups = 0;
  for (int i = 0; ok && i < n; i++) group[i] = find(up, i) == i ? n_groups++ : -1;
  for (int g = 0; ok && g < n_groups; g++) quick[g] = true;
  for (int i = 0; ok && i < n; i++) {
    group[i] = group[find(up, i)];
    group_size[group[i]] += size[i];
    if (!LLVMGetStringAttributeAtIndex(fn[i], LLVMAttributeFunctionIndex, CG_QUICK_ATTR,
                                       (unsigned)strlen(CG_QUICK_ATTR)))
      quick[group[i]] = false;
  }
  for (int g = 0; ok && g < n_groups; g++)
    if (quick[g]) group_size[g] = group_size[g] * 2 / 3;
  bool cached = ok && cache && cache->dir;
  Diag unusable = {0};
  if (cached && !rt_cache_usable(cache->dir, &unusable)) {
    if (cache->log) fprintf(cache->log, "kiln: cache: %s; compiling without the cache\n", unusable.msg);
    cached = false;
  }
  if (cached && !cg_cache_keys(cg, fn, group, n, n_groups, key)) {
    if (cache->log) fprintf(cache->log, "kiln: cache: cannot key this module's kernels; compiling without the cache\n");
    cached = false;
  }
  // Units (-1: a hit) and parts, a part's units numbered in a row: [lo[q], lo[q + 1]).
  int workers = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
  int units = 0, parts = 0, lo[MAX_THREADS + 1] = {0}, mid[MAX_THREADS + 1] = {0};
  long *unit_size = ok ? calloc((size_t)n + 1, sizeof *unit_size) : NULL;
  int *part_of = ok ? calloc((size_t)n + 1, sizeof *part_of) : NULL;
  int *renumber = ok ? calloc((size_t)n + 1, sizeof *renumber) : NULL;
  bool *unit_quick = ok ? calloc((size_t)(2 * n) + 2, sizeof *unit_quick) : NULL;
  if (ok && !(unit_size && part_of && renumber && unit_quick)) ok = diag_error(d, "out of memory");
  if (ok && cached) {
    units = look_up(cache, key, n_groups, hit, unit, &out->hits);
    out->misses = units;
    parts = units < workers ? units : workers;
    for (int g = 0; g < n_groups; g++)
      if (unit[g] >= 0) unit_size[unit[g]] = group_size[g];
    balance(unit_size, units, parts, part_of);
    for (int g = 0; g < n_groups; g++)
      if (unit[g] >= 0) unit_quick[unit[g]] = quick[g];
    int next = 0;
    for (int q = 0; q < parts; q++) {  // a part's units: the others, then the quick ones
      lo[q] = next;
      for (int c = 0; c < 2; c++) {
        if (c == 1) mid[q] = next;
        for (int u = 0; u < units; u++)
          if (part_of[u] == q && unit_quick[u] == c) renumber[u] = next++;
      }
    }
    lo[parts] = next;
    for (int g = 0; g < n_groups; g++)
      if (unit[g] >= 0) unit[g] = renumber[unit[g]];
  } else if (ok) {  // part q: units 2q (the others) and 2q + 1 (its quick groups)
    parts = workers < n_groups ? workers : n_groups > 0 ? n_groups : 1;
    units = 2 * parts;
    balance(group_size, n_groups, parts, unit);
    for (int g = 0; g < n_groups; g++) unit[g] = 2 * unit[g] + quick[g];
    for (int q = 0; q <= parts; q++) lo[q] = 2 * q, mid[q] = 2 * q + 1;
  }
  LLVMMemoryBufferRef *objs = ok ? calloc((size_t)units + 1, sizeof *objs) : NULL;
  if (ok && !objs) ok = diag_error(d, "out of memory");
  for (int i = 0; ok && i < n; i++) {
    size_t len;
    names[i] = (char *)LLVMGetValueName2(fn[i], &len);
  }
  if (ok && units > 0) {  // names sorted, with their units (-1: from the cache, compiled by none)
    qsort(names, (size_t)n, sizeof *names, by_name);
    for (int i = 0; i < n; i++) {
      size_t len;
      for (int j = 0; j < n; j++)
        if (!strcmp(LLVMGetValueName2(fn[j], &len), names[i])) {
          sorted_unit[i] = unit[group[j]];
          break;
        }
    }
    bc = LLVMWriteBitcodeToMemoryBuffer(cg->mod);
    if (!bc) ok = diag_error(d, "internal error: cannot write the module's bitcode");
  }
  ps = ok && parts > 0 ? calloc((size_t)parts, sizeof *ps) : NULL;
  if (ok && parts > 0 && !ps) ok = diag_error(d, "out of memory");
  pthread_t tid[MAX_THREADS];
  bool started[MAX_THREADS] = {0};
  for (int q = 0; ok && q < parts; q++) {
    ps[q] = (Part){.cg = cg, .bc = LLVMGetBufferStart(bc), .bc_size = LLVMGetBufferSize(bc), .names = names,
                   .unit_of = sorted_unit, .n_names = n, .lo = lo[q], .mid = mid[q], .hi = lo[q + 1], .objs = objs};
    if (q > 0) started[q] = pthread_create(&tid[q], NULL, compile_part, &ps[q]) == 0;
  }
  if (ok && parts > 0) compile_part(&ps[0]);
  for (int q = 1; ok && q < parts; q++) {
    if (started[q]) pthread_join(tid[q], NULL);
    else compile_part(&ps[q]);  // no thread to spare: here, after the others
  }
  for (int q = 0; ok && q < parts; q++) {
    if (ps[q].err[0] && ok) ok = diag_error(d, "%s", ps[q].err);
  }
  if (ok && cached && units > 0) {  // the new objects into the cache, then within its limit
    for (int g = 0; g < n_groups; g++)
      if (unit[g] >= 0)
        rt_cache_put(cache, key[g], LLVMGetBufferStart(objs[unit[g]]), LLVMGetBufferSize(objs[unit[g]]));
    rt_cache_trim(cache);
  }
  out->v = ok ? calloc((size_t)(n_groups + units) + 1, sizeof *out->v) : NULL;
  if (ok && !out->v) ok = diag_error(d, "out of memory");
  for (int g = 0; g < n_groups; g++) {
    if (ok && hit[g]) out->v[out->n++] = hit[g];
    else if (hit && hit[g]) LLVMDisposeMemoryBuffer(hit[g]);
  }
  for (int u = 0; objs && u < units; u++) {
    if (ok && objs[u]) out->v[out->n++] = objs[u];
    else if (objs[u]) LLVMDisposeMemoryBuffer(objs[u]);
  }
  free(ps);
  free(objs);
  if (bc) LLVMDisposeMemoryBuffer(bc);
  free(fn);
  free(up);
  free(size);
  free(group);
  free(unit);
  free(group_size);
  free(unit_size);
  free(part_of);
  free(renumber);
  free(unit_quick);
  free(quick);
  free(names);
  free(sorted_unit);
  free(key);
  free(hit);
  return ok;
}

void cg_objects_free(CgObjects *o) {
  for (int k = 0; k < o->n; k++)
    if (o->v[k]) LLVMDisposeMemoryBuffer(o->v[k]);
  free(o->v);
  memset(o, 0, sizeof *o);
}
