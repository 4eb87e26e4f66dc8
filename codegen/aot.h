// Ahead-of-time compilation (`kiln compile`, docs/aot.md): the pieces an executable or a
// library is linked from — an object file of the optimised kernels for a chosen CPU
// (codegen/aot.c) and the C source of the plan's tables for runtime/aot.h
// (codegen/aot_tables.c). The CLI (app/cmd_compile.c) runs `cc` on them.
#ifndef KILN_AOT_CG_H
#define KILN_AOT_CG_H

#include <stdio.h>

#include "codegen/cg.h"
#include "codegen/lower.h"
#include "ir/ir.h"
#include "runtime/program.h"

// --cpu: "native" (or NULL) leaves opt's cpu/features NULL (opt->tuning's, else the
// host's); any other name is checked with LLVM and its vector width (16 with AVX-512F, 8
// with AVX2, else 4) probed by compiling a few vector operations for it. cpu_buf (64
// bytes) holds the name opt->cpu then points to. false: an unknown CPU name, in a message
// that starts with `what` (the setting: "--cpu ", "KILN_CPU=").
bool cg_aot_target(const char *what, const char *cpu, CgOptions *opt, char *cpu_buf, Diag *d);

// Lowers the needed nodes, optimises like the JIT and writes an object file to path; the
// steps are returned (the caller frees steps->v). target (128 bytes) receives "CPU, W lanes".
bool cg_aot_object(const IrGraph *g, const bool *need, const CgOptions *opt, const char *path,
                   CgSteps *steps, char *target, Diag *d);

typedef struct CgAotTables {
  bool has_weights;      // the image is linked in as kiln_embedded_weights
  size_t weights_size;
  bool library;          // emit kiln_model_create instead of main
} CgAotTables;

// Writes program p (cg_describe: kernels named by symbol) as the C source
// of an RtProgram `model` and the entry point that runs it (main, or kiln_model_create).
bool cg_aot_write_tables(FILE *f, const RtProgram *p, const CgAotTables *t, Diag *d);

#endif
