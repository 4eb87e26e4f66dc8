// AOT objects (see aot.h): the target CPU for --cpu and the optimised kernels as an
// object file, from the same lowering and optimisation as the JIT.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <llvm-c/Target.h>

#include "codegen/aot.h"
#include "codegen/compile.h"

// A function `void NAME(ptr p) { *p = *p OP *p }` on vectors of type vt for cpu.
static void probe_fn(LLVMContextRef ctx, LLVMModuleRef mod, const char *name, const char *cpu,
                     LLVMTypeRef vt, bool is_float) {
  LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0);
  LLVMValueRef fn = LLVMAddFunction(mod, name, LLVMFunctionType(LLVMVoidTypeInContext(ctx), &ptr, 1, 0));
  const char *attrs[][2] = {{"target-cpu", cpu}, {"min-legal-vector-width", "512"},
                            {"prefer-vector-width", "512"}};
  for (int i = 0; i < 3; i++)
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                            LLVMCreateStringAttribute(ctx, attrs[i][0], (unsigned)strlen(attrs[i][0]),
                                                      attrs[i][1], (unsigned)strlen(attrs[i][1])));
  LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
  LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
  LLVMValueRef p = LLVMGetParam(fn, 0);
  LLVMValueRef v = LLVMBuildLoad2(b, vt, p, "v");
  LLVMValueRef r = is_float ? LLVMBuildFAdd(b, v, v, "r") : LLVMBuildAdd(b, v, v, "r");
  LLVMValueRef one = LLVMConstInt(LLVMInt64TypeInContext(ctx), 1, 0);
  LLVMBuildStore(b, r, LLVMBuildGEP2(b, vt, p, &one, 1, "q"));
  LLVMBuildRetVoid(b);
  LLVMDisposeBuilder(b);
}

// Does any instruction line of asm start with mnemonic and name register class reg?
static bool uses(const char *text, const char *mnemonic, const char *reg) {
  size_t n = strlen(mnemonic);
  for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
    const char *s = line;
    while (*s == ' ' || *s == '\t') s++;
    const char *end = strchr(s, '\n');
    if (!strncmp(s, mnemonic, n) && (s[n] == '\t' || s[n] == ' ')) {
      const char *r = strstr(s, reg);
      if (r && (!end || r < end)) return true;
    }
  }
  return false;
}

bool cg_aot_target(const char *what, const char *cpu, CgOptions *opt, char *cpu_buf, Diag *d) {
  if (!cpu || !strcmp(cpu, "native")) return true;
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  char *triple = LLVMGetDefaultTargetTriple(), *err = NULL;
  LLVMTargetRef target;
  if (LLVMGetTargetFromTriple(triple, &target, &err)) {
    diag_error(d, "LLVM has no target for %s: %s", triple, err);
    LLVMDisposeMessage(err);
    LLVMDisposeMessage(triple);
    return false;
  }
  // LLVM warns about an unknown CPU on stderr only (when it makes the subtarget): catch
  // the warning to refuse the name before generating code for it.
  fflush(stderr);
  int saved = dup(2);
  FILE *cap = tmpfile();
  if (cap) dup2(fileno(cap), 2);
  // An empty feature string: the CPU's own features, as LLVM knows them.
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu, "", LLVMCodeGenLevelDefault,
                                                    LLVMRelocPIC, LLVMCodeModelDefault);
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("probe", ctx);
  LLVMSetTarget(mod, triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);  // makes the subtarget: warns now
  char *layout = LLVMCopyStringRepOfTargetData(td);
  LLVMSetDataLayout(mod, layout);
  LLVMDisposeMessage(layout);
  LLVMDisposeTargetData(td);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  char warn[512] = "";
  if (cap) {
    rewind(cap);
    size_t got = fread(warn, 1, sizeof warn - 1, cap);
    warn[got] = 0;
    fclose(cap);
  }
  bool ok = true;
  LLVMMemoryBufferRef asm_buf = NULL;
  if (strstr(warn, "not a recognized processor")) {
    ok = diag_error(d, "%s%s: LLVM does not know this CPU (try native, x86-64-v3, "
                    "x86-64-v4, or a name llc -mcpu=help lists)", what, cpu);
  } else {
    // 16 f32 lanes in one zmm register: AVX-512F; 8 i32 lanes added in one ymm: AVX2.
    probe_fn(ctx, mod, "f16", cpu, LLVMVectorType(LLVMFloatTypeInContext(ctx), 16), true);
    probe_fn(ctx, mod, "i8", cpu, LLVMVectorType(LLVMInt32TypeInContext(ctx), 8), false);
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMAssemblyFile, &err, &asm_buf)) {
      ok = diag_error(d, "%s%s: LLVM cannot generate code for it: %s", what, cpu, err);
      LLVMDisposeMessage(err);
    }
  }
  if (ok) {
    const char *text = LLVMGetBufferStart(asm_buf);
    opt->vector_floats = uses(text, "vaddps", "%zmm") ? 16 : uses(text, "vpaddd", "%ymm") ? 8 : 4;
    snprintf(cpu_buf, 64, "%s", cpu);
    opt->cpu = cpu_buf;
    opt->features = "";
  }
  if (asm_buf) LLVMDisposeMemoryBuffer(asm_buf);
  LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  LLVMDisposeTargetMachine(tm);
  LLVMDisposeMessage(triple);
  return ok;
}

bool cg_aot_object(const IrGraph *g, const bool *need, const CgOptions *opt, const char *path,
                   CgSteps *steps, char *target, Diag *d) {
  Cg cg;
  memset(steps, 0, sizeof *steps);
  if (!cg_init(&cg, "kiln", opt, d)) return false;
  snprintf(target, 128, "%s, %d lanes", cg.cpu, cg.W);
  bool ok = cg_lower_program(&cg, g, need, steps, d) && cg_optimise(&cg, d);
  if (ok) {
    // Object code: the default code model (not the JIT's), position independent (PIE).
    LLVMTargetRef t;
    char *err = NULL;
    LLVMGetTargetFromTriple(cg.triple, &t, &err);
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(t, cg.triple, cg.cpu, cg.features,
                                                      LLVMCodeGenLevelAggressive, LLVMRelocPIC,
                                                      LLVMCodeModelDefault);
    if (LLVMTargetMachineEmitToFile(tm, cg.mod, (char *)path, LLVMObjectFile, &err)) {
      ok = diag_error(d, "cannot write the object file %s: %s", path, err);
      LLVMDisposeMessage(err);
    }
    LLVMDisposeTargetMachine(tm);
  }
  cg_dispose(&cg);
  return ok;
}
