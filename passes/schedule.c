// Scheduling (placeholder until the scheduler lands).
#include "passes/passes.h"

bool pass_schedule(IrGraph *g, const PassOptions *o, Diag *d) {
  (void)g, (void)o, (void)d;
  return true;
}
