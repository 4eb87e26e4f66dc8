// Codegen state and helpers (see cg.h): target machine for the host, kernel functions,
// loops, constants, vectors and intrinsics.
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Target.h>

#include "codegen/cg.h"

static char *dup_msg(char *llvm_msg) {
  char *s = strdup(llvm_msg ? llvm_msg : "");
  LLVMDisposeMessage(llvm_msg);
  return s;
}

bool cg_init(Cg *cg, const char *module_name, const CgOptions *opt, Diag *d) {
  static bool initialised;
  if (!initialised) {
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    initialised = true;
  }
  memset(cg, 0, sizeof *cg);
  CgOptions none = {0};
  if (!opt) opt = &none;
  cg->name = module_name;
  cg->dump_dir = opt->dump_dir;
  cg->training = opt->training;
  cg->pack_each_run = opt->pack_each_run;
  cg->triple = dup_msg(LLVMGetDefaultTargetTriple());
  cg->tuning = opt->tuning;
  cg->cache = opt->cache;
  // The tuning's CPU (KILN_CPU / KILN_CPU_FEATURES at the entry point) stands in for the
  // host, to test code for other CPUs here; opt->cpu (kiln compile --cpu) before both.
  const char *cpu = opt->cpu ? opt->cpu : opt->tuning.cpu;
  const char *features = opt->features ? opt->features : opt->tuning.features;
  // A named CPU without features is that CPU as LLVM models it (""), never the host's
  // features under another name (AVX-512 code for KILN_CPU=haswell, as it once was).
  cg->cpu = cpu ? strdup(cpu) : dup_msg(LLVMGetHostCPUName());
  cg->features = features ? strdup(features) : cpu ? strdup("") : dup_msg(LLVMGetHostCPUFeatures());
  LLVMTargetRef target;
  char *err = NULL;
  if (LLVMGetTargetFromTriple(cg->triple, &target, &err)) {
    diag_error(d, "LLVM has no target for %s: %s", cg->triple, err);
    LLVMDisposeMessage(err);
    cg_dispose(cg);
    return false;
  }
  cg->tm = LLVMCreateTargetMachine(target, cg->triple, cg->cpu, cg->features,
                                   LLVMCodeGenLevelAggressive, LLVMRelocPIC, LLVMCodeModelJITDefault);
  if (!cg->tm) {
    diag_error(d, "cannot create a target machine for cpu %s", cg->cpu);
    cg_dispose(cg);
    return false;
  }
  if (opt->vector_floats) {
    cg->W = opt->vector_floats;
  } else if (!features && cpu) {  // no feature string to read the width from: the probe's
    cg->W = opt->tuning.vector_floats ? opt->tuning.vector_floats : 4;
  } else {
    cg->W = cg_feature_on(cg->features, "avx512f") ? 16 : cg_feature_on(cg->features, "avx2") ? 8 : 4;
  }
  cg->tsc = LLVMOrcCreateNewThreadSafeContext();
  cg->ctx = LLVMOrcThreadSafeContextGetContext(cg->tsc);
  cg->mod = LLVMModuleCreateWithNameInContext(module_name, cg->ctx);
  LLVMSetTarget(cg->mod, cg->triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(cg->tm);
  char *layout = LLVMCopyStringRepOfTargetData(td);
  LLVMSetDataLayout(cg->mod, layout);
  LLVMDisposeMessage(layout);
  LLVMDisposeTargetData(td);
  cg->b = LLVMCreateBuilderInContext(cg->ctx);
  cg->void_t = LLVMVoidTypeInContext(cg->ctx);
  cg->f32 = LLVMFloatTypeInContext(cg->ctx);
  cg->f64 = LLVMDoubleTypeInContext(cg->ctx);
  cg->i1 = LLVMInt1TypeInContext(cg->ctx);
  cg->i8 = LLVMInt8TypeInContext(cg->ctx);
  cg->i32 = LLVMInt32TypeInContext(cg->ctx);
  cg->i64 = LLVMInt64TypeInContext(cg->ctx);
  cg->ptr = LLVMPointerTypeInContext(cg->ctx, 0);
  cg->vf = LLVMVectorType(cg->f32, (unsigned)cg->W);
  LLVMTypeRef params[3] = {cg->ptr, cg->i64, cg->i64};
  cg->kernel_ty = LLVMFunctionType(cg->void_t, params, 3, 0);
  return true;
}

void cg_dispose(Cg *cg) {
  if (cg->b) LLVMDisposeBuilder(cg->b);
  if (cg->mod) LLVMDisposeModule(cg->mod);
  if (cg->tsc) LLVMOrcDisposeThreadSafeContext(cg->tsc);
  if (cg->tm) LLVMDisposeTargetMachine(cg->tm);
  free(cg->triple);
  free(cg->cpu);
  free(cg->features);
  memset(cg, 0, sizeof *cg);
}

// ---------------------------------------------------------------------------------------
static void add_string_attr(Cg *cg, LLVMValueRef fn, const char *k, const char *v) {
  LLVMAttributeRef a = LLVMCreateStringAttribute(cg->ctx, k, (unsigned)strlen(k), v, (unsigned)strlen(v));
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
}

static void add_enum_attr(Cg *cg, LLVMValueRef fn, unsigned idx, const char *name) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
}

void cg_kernel_begin(Cg *cg, const char *name) {
  cg->fn = LLVMAddFunction(cg->mod, name, cg->kernel_ty);
  add_string_attr(cg, cg->fn, "target-cpu", cg->cpu);
  add_string_attr(cg, cg->fn, "target-features", cg->features);
  char width[16];
  snprintf(width, sizeof width, "%d", cg->W * 32);
  // Explicit vectors of the register width must stay that wide (some CPUs prefer 256).
  add_string_attr(cg, cg->fn, "min-legal-vector-width", width);
  add_string_attr(cg, cg->fn, "prefer-vector-width", width);
  add_enum_attr(cg, cg->fn, LLVMAttributeFunctionIndex, "nounwind");
  add_enum_attr(cg, cg->fn, 1, "noalias");
  if (cg->quick) add_string_attr(cg, cg->fn, CG_QUICK_ATTR, "1");
  cg->bufs = LLVMGetParam(cg->fn, 0);
  cg->begin = LLVMGetParam(cg->fn, 1);
  cg->end = LLVMGetParam(cg->fn, 2);
  LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "entry"));
}

void cg_kernel_end(Cg *cg) {
  LLVMBuildRetVoid(cg->b);
  cg->fn = NULL;
}

LLVMValueRef cg_buf(Cg *cg, int i) {
  LLVMValueRef p = cg_gep(cg, cg->ptr, cg->bufs, cg_i64(cg, i));
  LLVMValueRef v = LLVMBuildLoad2(cg->b, cg->ptr, p, "buf");
  LLVMSetMetadata(v, LLVMGetMDKindIDInContext(cg->ctx, "invariant.load", 14),
                  LLVMMetadataAsValue(cg->ctx, LLVMMDNodeInContext2(cg->ctx, NULL, 0)));
  return v;
}

LLVMBasicBlockRef cg_block(Cg *cg, const char *name) {
  return LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, name);
}

void cg_for_begin(Cg *cg, CgLoop *l, LLVMValueRef lo, LLVMValueRef hi, LLVMValueRef step,
                  const char *name) {
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b);
  l->head = cg_block(cg, name);
  LLVMBasicBlockRef body = cg_block(cg, name);
  l->exit = cg_block(cg, name);
  l->step = step;
  LLVMBuildBr(cg->b, l->head);
  LLVMPositionBuilderAtEnd(cg->b, l->head);
  l->iv = LLVMBuildPhi(cg->b, LLVMTypeOf(lo), name);
  LLVMAddIncoming(l->iv, &lo, &pre, 1);
  LLVMValueRef more = LLVMBuildICmp(cg->b, LLVMIntSLT, l->iv, hi, "more");
  LLVMBuildCondBr(cg->b, more, body, l->exit);
  LLVMPositionBuilderAtEnd(cg->b, body);
}

void cg_for_end(Cg *cg, CgLoop *l) {
  LLVMValueRef next = LLVMBuildAdd(cg->b, l->iv, l->step, "next");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(cg->b);
  LLVMBuildBr(cg->b, l->head);
  LLVMAddIncoming(l->iv, &next, &latch, 1);
  LLVMPositionBuilderAtEnd(cg->b, l->exit);
}

// ---------------------------------------------------------------------------------------
LLVMValueRef cg_i64(Cg *cg, int64_t v) { return LLVMConstInt(cg->i64, (unsigned long long)v, 1); }
LLVMValueRef cg_i32(Cg *cg, int32_t v) { return LLVMConstInt(cg->i32, (unsigned long long)(int64_t)v, 1); }
LLVMValueRef cg_f32(Cg *cg, double v) { return LLVMConstReal(cg->f32, v); }

LLVMTypeRef cg_vec_t(Cg *cg, LLVMTypeRef elem, int lanes) {
  (void)cg;
  return lanes == 1 ? elem : LLVMVectorType(elem, (unsigned)lanes);
}

LLVMValueRef cg_splat(Cg *cg, LLVMValueRef scalar, int lanes) {
  if (lanes == 1) return scalar;
  LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(scalar), (unsigned)lanes);
  LLVMValueRef v = LLVMBuildInsertElement(cg->b, LLVMGetPoison(vt), scalar, cg_i32(cg, 0), "");
  LLVMValueRef zero = LLVMConstNull(LLVMVectorType(cg->i32, (unsigned)lanes));
  return LLVMBuildShuffleVector(cg->b, v, LLVMGetPoison(vt), zero, "splat");
}

LLVMValueRef cg_const_like(Cg *cg, LLVMValueRef x, double v) {
  LLVMTypeRef t = LLVMTypeOf(x);
  if (LLVMGetTypeKind(t) == LLVMVectorTypeKind) {
    unsigned n = LLVMGetVectorSize(t);
    LLVMValueRef c = LLVMConstReal(LLVMGetElementType(t), v);
    LLVMValueRef lanes[64];
    assert(n <= 64);
    for (unsigned i = 0; i < n; i++) lanes[i] = c;
    return LLVMConstVector(lanes, n);
  }
  (void)cg;
  return LLVMConstReal(t, v);
}

LLVMValueRef cg_const_int_like(Cg *cg, LLVMValueRef x, int64_t v) {
  LLVMTypeRef t = LLVMTypeOf(x);
  if (LLVMGetTypeKind(t) == LLVMVectorTypeKind) {
    unsigned n = LLVMGetVectorSize(t);
    LLVMValueRef c = LLVMConstInt(cg->i32, (unsigned long long)v, 1);
    LLVMValueRef lanes[64];
    assert(n <= 64);
    for (unsigned i = 0; i < n; i++) lanes[i] = c;
    return LLVMConstVector(lanes, n);
  }
  return LLVMConstInt(cg->i32, (unsigned long long)v, 1);
}

LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMTypeRef overload, LLVMValueRef *args,
                          int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  assert(id && "unknown intrinsic");
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, &overload, 1);
  LLVMTypeRef fty = LLVMIntrinsicGetType(cg->ctx, id, &overload, 1);
  return LLVMBuildCall2(cg->b, fty, fn, args, (unsigned)n, "");
}

LLVMValueRef cg_fma(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMValueRef args[3] = {a, b, c};
  return cg_intrinsic(cg, "llvm.fma", LLVMTypeOf(a), args, 3);
}

LLVMValueRef cg_gep(Cg *cg, LLVMTypeRef elem, LLVMValueRef base, LLVMValueRef idx) {
  return LLVMBuildInBoundsGEP2(cg->b, elem, base, &idx, 1, "");
}

LLVMValueRef cg_load(Cg *cg, LLVMTypeRef elem, LLVMValueRef ptr, int lanes) {
  LLVMValueRef v = LLVMBuildLoad2(cg->b, cg_vec_t(cg, elem, lanes), ptr, "");
  LLVMSetAlignment(v, LLVMABIAlignmentOfType(LLVMGetModuleDataLayout(cg->mod), elem));
  return v;
}

void cg_store(Cg *cg, LLVMValueRef v, LLVMValueRef ptr) {
  LLVMTypeRef t = LLVMTypeOf(v);
  LLVMTypeRef elem = LLVMGetTypeKind(t) == LLVMVectorTypeKind ? LLVMGetElementType(t) : t;
  LLVMValueRef s = LLVMBuildStore(cg->b, v, ptr);
  LLVMSetAlignment(s, LLVMABIAlignmentOfType(LLVMGetModuleDataLayout(cg->mod), elem));
}

LLVMValueRef cg_reduce_add(Cg *cg, LLVMValueRef v) {
  LLVMTypeRef t = LLVMTypeOf(v);
  if (LLVMGetTypeKind(t) != LLVMVectorTypeKind) return v;
  LLVMValueRef args[2] = {LLVMConstReal(LLVMGetElementType(t), 0.0), v};
  return cg_intrinsic(cg, "llvm.vector.reduce.fadd", t, args, 2);
}

LLVMValueRef cg_reduce_max(Cg *cg, LLVMValueRef v) {
  LLVMTypeRef t = LLVMTypeOf(v);
  if (LLVMGetTypeKind(t) != LLVMVectorTypeKind) return v;
  return cg_intrinsic(cg, "llvm.vector.reduce.fmaximum", t, &v, 1);  // NaN propagates
}

LLVMValueRef cg_reduce_max_nonan(Cg *cg, LLVMValueRef v) {
  LLVMTypeRef t = LLVMTypeOf(v);
  if (LLVMGetTypeKind(t) != LLVMVectorTypeKind) return v;
  LLVMValueRef r = cg_intrinsic(cg, "llvm.vector.reduce.fmax", t, &v, 1);
  LLVMSetFastMathFlags(r, LLVMFastMathNoNaNs | LLVMFastMathNoSignedZeros);
  return r;
}
