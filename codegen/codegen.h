// Code generation through the LLVM C API. Today: what the host CPU is, which decides the
// vector width kernels are generated for. (The JIT issue adds kernel emission and LLJIT.)
#ifndef KILN_CODEGEN_H
#define KILN_CODEGEN_H

#include <stdbool.h>
#include <stddef.h>

typedef struct CgHost {
  char cpu[64];        // LLVMGetHostCPUName, e.g. "sapphirerapids", "znver5"
  int vector_floats;   // f32 lanes of the widest usable vector: 16 (AVX-512), 8 (AVX2), 4
  char features[4096]; // LLVMGetHostCPUFeatures ("+avx2,+fma,...")
} CgHost;

void cg_host_query(CgHost *h);
// Whether an LLVM feature string ("+avx2,+fma,...,-avx512f") turns `name` on: its last
// "+name" or "-name" decides.
bool cg_feature_on(const char *features, const char *name);

#endif
