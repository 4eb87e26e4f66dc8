// Algebraic simplification (placeholder until the rules land).
#include "passes/passes.h"

bool pass_simplify(IrGraph *g, const PassOptions *o, Diag *d) {
  (void)g, (void)o, (void)d;
  return true;
}
