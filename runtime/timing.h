// Wall-clock timing shared by the benchmarks (kiln bench, bench --train, AOT --iters), the
// compiler's phase times and training's progress line.
#ifndef KILN_TIMING_H
#define KILN_TIMING_H

// Milliseconds on the monotonic clock (an arbitrary origin: only differences mean anything).
double rt_now_ms(void);
// Sorts t[0..n) ascending and returns its median (the mean of the middle two when n is even).
double rt_sort_median(double *t, int n);

#endif
