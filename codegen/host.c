// The host CPU as LLVM sees it: name, feature string and the f32 vector width kernels use.
#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>
#include <stdio.h>
#include <string.h>

#include "codegen/codegen.h"

bool cg_feature_on(const char *features, const char *name) {
  size_t n = strlen(name);
  bool on = false;  // the last "+name" or "-name" decides, as LLVM reads "+x,...,-x"
  for (const char *p = features; (p = strstr(p, name)); p += n)
    if (p > features && (p[-1] == '+' || p[-1] == '-') && (p[n] == ',' || p[n] == 0))
      on = p[-1] == '+';
  return on;
}

void cg_host_query(CgHost *h) {
  char *cpu = LLVMGetHostCPUName();
  char *feat = LLVMGetHostCPUFeatures();
  snprintf(h->cpu, sizeof h->cpu, "%s", cpu);
  snprintf(h->features, sizeof h->features, "%s", feat);
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(feat);
  h->vector_floats = cg_feature_on(h->features, "avx512f") ? 16
                     : cg_feature_on(h->features, "avx2")  ? 8
                     : cg_feature_on(h->features, "sse2")  ? 4
                                                           : 1;
}
