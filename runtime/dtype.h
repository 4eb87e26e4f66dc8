// Element types shared by tensor files, the IR and the runtime, with their sizes and names
// (safetensors spelling "F32", model-file spelling "f32"), and safe conversions between them.
#ifndef KILN_DTYPE_H
#define KILN_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/diag.h"

typedef enum {
  DT_F32, DT_F64, DT_I32, DT_I64, DT_BF16, DT_F16, DT_U8, DT_BOOL,
  DT_COUNT
} DType;

size_t dt_size(DType t);
const char *dt_name(DType t);        // "f32"
const char *dt_st_name(DType t);     // "F32" (safetensors)
bool dt_is_float(DType t);
// Parses "f32"/"F32" etc. Returns false for unknown names.
bool dt_parse(const char *s, DType *out);

// Reads element i of a raw buffer as double / writes a double into element i.
double dt_load(DType t, const void *p, size_t i);
void dt_store(DType t, void *p, size_t i, double v);

// x rounded to the nearest bf16 (ties to even), as a float: the operand rounding of a bf16
// GEMM (the reference and the JIT's packing agree on it bit for bit). NaN stays NaN (quiet),
// values past bf16's largest finite become inf.
float dt_round_bf16(float x);

// Symmetric int8 quantisation of a row (activations, per row) or column (weights, per
// output channel) whose largest |x| is maxabs (f32; NaN when the row has one): the int8
// GEMM's rule, in f32 arithmetic so that the JIT's packing and the reference agree bit for
// bit. scale = maxabs / 127; q(x) = clamp(roundeven(x * inv), -127, 127) with
// inv = 127 / maxabs (0 when maxabs is 0 or not > 0, e.g. NaN: q = 0, and the NaN scale
// makes the results NaN). The GEMM's value is ((float)sum_k qa·qb · scale_a) · scale_b.
float dt_int8_scale(float maxabs);
float dt_int8_inv(float maxabs);
int dt_int8_quant(float x, float inv);

// Converts n elements from (st, src) to (dt, dst). A conversion is allowed when no value
// changes meaning: integers to floats only if every value is exactly representable,
// floats to integers only if every value is integral and in range, f64 to f32/f16/bf16 by
// rounding (finite values only must stay finite). `what` names the tensor in the message.
bool dt_convert(DType st, const void *src, DType dt, void *dst, size_t n, const char *what,
                Diag *d);

#endif
