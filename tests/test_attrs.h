// Test helpers shared by the Check programs that build IR nodes by hand: shapes, and
// setting attributes by name (marking them given, as the model-file parser does).
#ifndef KILN_TEST_ATTRS_H
#define KILN_TEST_ATTRS_H

#include <check.h>
#include <stdarg.h>

#include "ir/ir.h"

// shp(3, 2, 3, 4) is the shape [2, 3, 4]; shp(0) is a scalar.
static inline IrShape shp(int rank, ...) {
  IrShape s = {.rank = rank};
  va_list ap;
  va_start(ap, rank);
  for (int k = 0; k < rank; k++) s.dim[k] = va_arg(ap, int);
  va_end(ap);
  return s;
}

static inline IrAttr *attr_slot(IrNode *n, const char *name) {
  int i = ir_attr_index(n->op, name);
  ck_assert_msg(i >= 0, "%s has no attribute %s", ir_ops[n->op].name, name);
  n->attr[i].set = true;
  return &n->attr[i];
}

static inline void set_int(IrNode *n, const char *name, int64_t v) { attr_slot(n, name)->i = v; }
static inline void set_float(IrNode *n, const char *name, double v) { attr_slot(n, name)->f = v; }

// set_ints(n, "perm", 3, 2, 0, 1) sets perm = [2, 0, 1].
static inline void set_ints(IrNode *n, const char *name, int count, ...) {
  IrAttr *a = attr_slot(n, name);
  a->n = count;
  va_list ap;
  va_start(ap, count);
  for (int k = 0; k < count; k++) a->ints[k] = va_arg(ap, int);
  va_end(ap);
}

#endif
