// Dead-code elimination: removes every node that no output, loss or gradient reaches
// (autodiff leaves behind gradients nobody asked for; simplify and CSE orphan the nodes
// they replace). Inputs and parameters stay: users bind them by name.
#include "passes/passes.h"

bool pass_dce(IrGraph *g, const PassOptions *o, Diag *d) {
  (void)o;
  return ir_remove_dead(g, d) >= 0;
}
