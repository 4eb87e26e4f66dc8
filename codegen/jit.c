// The JIT: verify a module, optimise it with the new pass manager (CG_PASSES) for the
// host target machine and compile it to objects on several threads (codegen/objects.c;
// optionally dumping the optimised IR instead, on one), and load them into ORC LLJIT.
// RtTuning.perf_jit (KILN_PERF_JIT=1) links with RuntimeDyld and LLVM's perf listener,
// which writes ~/.debug/jit/.../jit-PID.dump for `perf record -k 1` + `perf inject --jit`
// (see docs/benchmarks.md): perf then names the kernels instead of showing bare addresses.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/ExecutionEngine.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/OrcEE.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen/cg.h"

struct CgJit {
  LLVMOrcLLJITRef jit;
  int cache_hits, cache_misses;
};

static bool llvm_error(LLVMErrorRef e, const char *what, Diag *d) {
  char *msg = LLVMGetErrorMessage(e);
  diag_error(d, "%s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
  return false;
}

static bool dump_module(Cg *cg, Diag *d) {
  if (mkdir(cg->dump_dir, 0777) != 0 && errno != EEXIST)
    return diag_error(d, "--dump-llvm %s: cannot create the directory: %s", cg->dump_dir,
                      strerror(errno));
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.ll", cg->dump_dir, cg->name);
  char *err = NULL;
  if (LLVMPrintModuleToFile(cg->mod, path, &err)) {
    diag_error(d, "--dump-llvm: cannot write %s: %s", path, err);
    LLVMDisposeMessage(err);
    return false;
  }
  // And one file per kernel, DIR/<kernel>.ll, for reading one at a time.
  for (LLVMValueRef f = LLVMGetFirstFunction(cg->mod); f; f = LLVMGetNextFunction(f)) {
    if (LLVMIsDeclaration(f)) continue;
    size_t len;
    snprintf(path, sizeof path, "%s/%s.ll", cg->dump_dir, LLVMGetValueName2(f, &len));
    FILE *out = fopen(path, "w");
    if (!out) return diag_error(d, "--dump-llvm: cannot write %s: %s", path, strerror(errno));
    char *text = LLVMPrintValueToString(f);
    fputs(text, out);
    LLVMDisposeMessage(text);
    if (fclose(out) != 0) return diag_error(d, "--dump-llvm: cannot write %s", path);
  }
  return true;
}

bool cg_verify(Cg *cg, Diag *d) {
  char *err = NULL;
  if (LLVMVerifyModule(cg->mod, LLVMReturnStatusAction, &err)) {
    diag_error(d, "internal error: generated LLVM module %s does not verify: %.1500s", cg->name, err);
    LLVMDisposeMessage(err);
    return false;
  }
  LLVMDisposeMessage(err);
  return true;
}

bool cg_optimise(Cg *cg, Diag *d) {
  if (!cg_verify(cg, d)) return false;
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(cg->mod, CG_PASSES, cg->tm, po);
  LLVMDisposePassBuilderOptions(po);
  if (e) return llvm_error(e, "LLVM optimisation failed", d);
  return !cg->dump_dir || dump_module(cg, d);
}

// The object layer for RtTuning.perf_jit: RuntimeDyld (JITLink has no C hook for listeners)
// with the perf listener, when this LLVM was built with it (else a warning, no listener).
static LLVMOrcObjectLayerRef perf_object_layer(void *ctx, LLVMOrcExecutionSessionRef es,
                                               const char *triple) {
  (void)ctx, (void)triple;
  LLVMOrcObjectLayerRef layer = LLVMOrcCreateRTDyldObjectLinkingLayerWithSectionMemoryManager(es);
  LLVMJITEventListenerRef perf = LLVMCreatePerfJITEventListener();
  if (perf)
    LLVMOrcRTDyldObjectLinkingLayerRegisterJITEventListener(layer, perf);
  else
    fprintf(stderr, "kiln: KILN_PERF_JIT (perf_jit): this LLVM has no perf JIT listener\n");
  return layer;
}

// The module's objects: on several threads (through the cache), or (dumping the optimised
// IR) one object of the module that cg_optimise optimised whole.
static bool emit_objects(Cg *cg, CgObjects *objs, Diag *d) {
  if (!cg->dump_dir) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cg->tuning.threads > 0 ? cg->tuning.threads : cores > 0 ? (int)cores : 1;
    return cg_emit_objects(cg, threads, &cg->cache, objs, d);
  }
  *objs = (CgObjects){.v = calloc(1, sizeof *objs->v)};
  if (!objs->v) return diag_error(d, "out of memory");
  if (!cg_optimise(cg, d)) return false;
  char *err = NULL;
  if (LLVMTargetMachineEmitToMemoryBuffer(cg->tm, cg->mod, LLVMObjectFile, &err, &objs->v[0])) {
    diag_error(d, "LLVM code generation failed: %s", err ? err : "");
    LLVMDisposeMessage(err);
    return false;
  }
  objs->n = 1;
  return true;
}

bool cg_jit(Cg *cg, CgJit **out, Diag *d) {
  CgObjects objs = {0};
  if (!emit_objects(cg, &objs, d)) {
    cg_objects_free(&objs);
    cg_dispose(cg);
    return false;
  }
  char *err = NULL;
  LLVMErrorRef e;
  // The JIT's own target machine: same triple, CPU and features, aggressive codegen.
  LLVMTargetRef target;
  LLVMGetTargetFromTriple(cg->triple, &target, &err);
  LLVMTargetMachineRef jtm = LLVMCreateTargetMachine(target, cg->triple, cg->cpu, cg->features,
                                                     LLVMCodeGenLevelAggressive, LLVMRelocPIC,
                                                     LLVMCodeModelJITDefault);
  bool perf_jit = cg->tuning.perf_jit;
  cg_dispose(cg);  // the objects are all the JIT needs
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
      builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jtm));
  if (perf_jit)
    LLVMOrcLLJITBuilderSetObjectLinkingLayerCreator(builder, perf_object_layer, NULL);
  CgJit *j = calloc(1, sizeof *j);
  if (!j) {
    LLVMOrcDisposeLLJITBuilder(builder);
    cg_objects_free(&objs);
    return diag_error(d, "out of memory");
  }
  j->cache_hits = objs.hits, j->cache_misses = objs.misses;
  if ((e = LLVMOrcCreateLLJIT(&j->jit, builder))) {  // consumes builder
    free(j);
    cg_objects_free(&objs);
    return llvm_error(e, "cannot create the LLVM JIT", d);
  }
  // Calls the optimiser may introduce (memset, memcpy, libm on CPUs without FMA) resolve
  // against this process.
  LLVMOrcDefinitionGeneratorRef gen;
  if ((e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
           &gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL, NULL))) {
    cg_jit_free(j);
    cg_objects_free(&objs);
    return llvm_error(e, "cannot give the JIT the process's symbols", d);
  }
  LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(j->jit), gen);
  for (int k = 0; k < objs.n; k++) {
    e = LLVMOrcLLJITAddObjectFile(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), objs.v[k]);
    objs.v[k] = NULL;  // the JIT owns it
    if (e) {
      cg_objects_free(&objs);
      cg_jit_free(j);
      return llvm_error(e, "cannot load the kernels into the JIT", d);
    }
  }
  cg_objects_free(&objs);
  *out = j;
  return true;
}

void *cg_jit_lookup(CgJit *j, const char *name) {
  LLVMOrcExecutorAddress addr = 0;
  LLVMErrorRef e = LLVMOrcLLJITLookup(j->jit, &addr, name);
  if (e) {
    LLVMConsumeError(e);
    return NULL;
  }
  return (void *)(uintptr_t)addr;
}

void cg_jit_cache_counts(const CgJit *j, int *hits, int *misses) {
  *hits = j ? j->cache_hits : 0;
  *misses = j ? j->cache_misses : 0;
}

void cg_jit_free(CgJit *j) {
  if (!j) return;
  if (j->jit) {
    LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->jit);
    if (e) LLVMConsumeError(e);
  }
  free(j);
}
