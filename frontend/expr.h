// Config arithmetic: the expressions model files write in shapes and attributes
// ("text_len + regions", "hidden / heads", "-1", "(a + 1) * 2"): numbers, names, + - * / //
// % and parentheses, evaluated in double. // floors and % takes the divisor's sign (as in
// Python). Names are resolved by the caller's lookup.
#ifndef KILN_EXPR_H
#define KILN_EXPR_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/diag.h"

// Returns true and sets *out if the name (not NUL-terminated: len bytes) is known.
typedef bool (*ExprLookup)(void *ctx, const char *name, size_t len, double *out);

// Evaluates src. Errors: syntax (with the column), unknown names, division by zero,
// non-finite results. Messages quote the expression.
bool expr_eval(const char *src, ExprLookup lookup, void *ctx, double *out, Diag *d);

// A whole number from a double, or false if it is not one (or is outside ±2^53).
bool expr_whole(double v, long long *out);

#endif
