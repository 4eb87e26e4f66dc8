// Compiling a module's kernels to object files on several threads (see cg.h): the module's
// functions are split into parts, each a set of kernels with the internal helpers they call,
// balanced by instruction count; each part is read from the module's bitcode into a context
// of its own and optimised (default<O3>) and compiled by a target machine of its own, on its
// own thread. Every function is optimised alone (kernels never call each other), so a kernel's
// code is what the optimiser makes of it in the whole module.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen/cg.h"

#define MAX_PARTS CG_MAX_OBJECTS

typedef struct Part {
  const Cg *cg;             // triple, cpu, features (read only)
  const char *bc;           // the whole module's bitcode
  size_t bc_size;
  char **names;             // the defined functions, sorted by name
  const int *part_of;       // ... and the part of each
  int n_names, id;
  LLVMMemoryBufferRef obj;  // out
  char err[512];            // out: empty on success
} Part;

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int part_of(const Part *p, const char *name) {
  const char *key = name;
  char **hit = bsearch(&key, p->names, (size_t)p->n_names, sizeof *p->names, by_name);
  return hit ? p->part_of[hit - p->names] : -1;
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
  // Drop the other parts' functions: callers before the helpers they call.
  for (bool changed = true; changed;) {
    changed = false;
    LLVMValueRef next;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = next) {
      next = LLVMGetNextFunction(f);
      size_t len;
      if (LLVMIsDeclaration(f) || LLVMGetFirstUse(f) || part_of(p, LLVMGetValueName2(f, &len)) == p->id)
        continue;
      LLVMDeleteFunction(f);
      changed = true;
    }
  }
  const Cg *cg = p->cg;
  LLVMTargetRef target;
  char *err = NULL;
  LLVMTargetMachineRef tm = NULL;
  if (LLVMGetTargetFromTriple(cg->triple, &target, &err) == 0)
    tm = LLVMCreateTargetMachine(target, cg->triple, cg->cpu, cg->features, LLVMCodeGenLevelAggressive,
                                 LLVMRelocPIC, LLVMCodeModelJITDefault);
  LLVMDisposeMessage(err);
  err = NULL;
  if (!tm) {
    snprintf(p->err, sizeof p->err, "cannot create a target machine for cpu %s", cg->cpu);
  } else {
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMErrorRef e = LLVMRunPasses(mod, "default<O3>", tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (e) {
      char *msg = LLVMGetErrorMessage(e);
      snprintf(p->err, sizeof p->err, "LLVM optimisation failed: %s", msg);
      LLVMDisposeErrorMessage(msg);
    } else if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &err, &p->obj)) {
      snprintf(p->err, sizeof p->err, "LLVM code generation failed: %s", err ? err : "");
      LLVMDisposeMessage(err);
      p->obj = NULL;
    }
    LLVMDisposeTargetMachine(tm);
  }
  LLVMDisposeModule(mod);
  LLVMDisposeMemoryBuffer(buf);
  LLVMContextDispose(ctx);
  return NULL;
}

// Union-find over function indices: a kernel and the helpers it calls are one group.
static int find(int *up, int i) {
  while (up[i] != i) i = up[i] = up[up[i]];
  return i;
}

bool cg_emit_objects(Cg *cg, int threads, LLVMMemoryBufferRef *objs, int *n_objs, Diag *d) {
  *n_objs = 0;
  if (!cg_verify(cg, d)) return false;
  int n = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(cg->mod); f; f = LLVMGetNextFunction(f))
    n += !LLVMIsDeclaration(f);
  LLVMValueRef *fn = calloc((size_t)n + 1, sizeof *fn);
  int *up = calloc((size_t)n + 1, sizeof *up), *size = calloc((size_t)n + 1, sizeof *size);
  int *part = calloc((size_t)n + 1, sizeof *part);
  char **names = calloc((size_t)n + 1, sizeof *names);
  int *sorted_part = calloc((size_t)n + 1, sizeof *sorted_part);
  LLVMMemoryBufferRef bc = NULL;
  bool ok = fn && up && size && part && names && sorted_part;
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
  // Groups to parts, largest first, each to the lightest part (LPT).
  int parts = threads < 1 ? 1 : threads > MAX_PARTS ? MAX_PARTS : threads;
  if (parts > n) parts = n > 0 ? n : 1;
  int *group_size = calloc((size_t)n + 1, sizeof *group_size);
  long load[MAX_PARTS] = {0};
  ok = ok && group_size;
  for (int i = 0; ok && i < n; i++) group_size[find(up, i)] += size[i];
  int *group_part = calloc((size_t)n + 1, sizeof *group_part);
  ok = ok && group_part;
  for (int done = 0; ok && done < n;) {
    int best = -1;
    for (int i = 0; i < n; i++)
      if (find(up, i) == i && group_size[i] >= 0 && (best < 0 || group_size[i] > group_size[best])) best = i;
    if (best < 0) break;
    int light = 0;
    for (int q = 1; q < parts; q++)
      if (load[q] < load[light]) light = q;
    load[light] += group_size[best];
    group_part[best] = light;
    group_size[best] = -1;
    done++;
  }
  for (int i = 0; ok && i < n; i++) {
    size_t len;
    names[i] = (char *)LLVMGetValueName2(fn[i], &len);
    part[i] = group_part[find(up, i)];
  }
  if (ok) {  // names sorted, with their parts
    qsort(names, (size_t)n, sizeof *names, by_name);
    for (int i = 0; i < n; i++) {
      size_t len;
      for (int j = 0; j < n; j++)
        if (!strcmp(LLVMGetValueName2(fn[j], &len), names[i])) {
          sorted_part[i] = part[j];
          break;
        }
    }
    bc = LLVMWriteBitcodeToMemoryBuffer(cg->mod);
    if (!bc) ok = diag_error(d, "internal error: cannot write the module's bitcode");
  }
  Part *ps = ok ? calloc((size_t)parts, sizeof *ps) : NULL;
  pthread_t tid[MAX_PARTS];
  bool started[MAX_PARTS] = {0};
  if (ok && !ps) ok = diag_error(d, "out of memory");
  for (int q = 0; ok && q < parts; q++) {
    ps[q] = (Part){.cg = cg, .bc = LLVMGetBufferStart(bc), .bc_size = LLVMGetBufferSize(bc),
                   .names = names, .part_of = sorted_part, .n_names = n, .id = q};
    if (q > 0) started[q] = pthread_create(&tid[q], NULL, compile_part, &ps[q]) == 0;
  }
  if (ok) compile_part(&ps[0]);
  for (int q = 1; ok && q < parts; q++) {
    if (started[q]) pthread_join(tid[q], NULL);
    else compile_part(&ps[q]);  // no thread to spare: here, after the others
  }
  for (int q = 0; ok && q < parts; q++) {
    if (ps[q].err[0] && ok) ok = diag_error(d, "%s", ps[q].err);
  }
  for (int q = 0; ps && q < parts; q++) {
    if (ok) objs[(*n_objs)++] = ps[q].obj;
    else if (ps[q].obj) LLVMDisposeMemoryBuffer(ps[q].obj);
  }
  free(ps);
  if (bc) LLVMDisposeMemoryBuffer(bc);
  free(fn);
  free(up);
  free(size);
  free(part);
  free(names);
  free(sorted_part);
  free(group_size);
  free(group_part);
  return ok;
}
