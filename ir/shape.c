// Shape helpers shared by the shape rules, the evaluator and the printers.
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "ir/ir.h"
#include "ir/ops_impl.h"

int64_t ir_numel(const IrShape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dim[i];
  return n;
}

bool ir_shape_eq(const IrShape *a, const IrShape *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->dim[i] != b->dim[i]) return false;
  return true;
}

const char *ir_shape_str(const IrShape *s, char *buf, size_t n) {
  size_t len = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < s->rank && len < n; i++)
    len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? "," : "", (long long)s->dim[i]);
  if (len < n) snprintf(buf + len, n - len, "]");
  return buf;
}

bool ir_broadcast(const IrShape *a, const IrShape *b, IrShape *out, Diag *d) {
  IrShape r = {.rank = a->rank > b->rank ? a->rank : b->rank};
  for (int i = 0; i < r.rank; i++) {
    int ia = a->rank - r.rank + i, ib = b->rank - r.rank + i;
    int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      char sa[128], sb[128];
      return diag_error(d, "shapes %s and %s do not broadcast (dim %d: %lld vs %lld)",
                        ir_shape_str(a, sa, sizeof sa), ir_shape_str(b, sb, sizeof sb), i,
                        (long long)da, (long long)db);
    }
    r.dim[i] = da == 1 ? db : da;
  }
  *out = r;
  return true;
}

void ir_broadcast_strides(const IrShape *in, const IrShape *out, int64_t *stride) {
  assert(in->rank <= out->rank);
  int shift = out->rank - in->rank;
  int64_t step = 1;
  for (int k = out->rank - 1; k >= 0; k--) {
    int ik = k - shift;
    if (ik < 0 || in->dim[ik] == 1) {
      stride[k] = 0;
    } else {
      assert(in->dim[ik] == out->dim[k]);
      stride[k] = step;
    }
    if (ik >= 0) step *= in->dim[ik];
  }
}
