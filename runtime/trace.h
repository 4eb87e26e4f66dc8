// Execution traces: what every thread did in every step of the runs a trace records (when
// its kernel began and ended, when it left the barrier after it), in seconds from the
// trace's start. api/trace.c writes one as Chrome trace-event JSON (`--trace FILE`).
#ifndef KILN_TRACE_H
#define KILN_TRACE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct RtTraceSpan {
  int32_t step, run;         // the plan's step, and which recorded run it belongs to
  double begin, end, left;   // kernel begin and end; barrier left (= end with one thread)
} RtTraceSpan;

typedef struct RtTrace {
  int threads;          // tracks: thread t records into span[t * cap ..]
  int32_t max_runs;     // runs to record; later ones (or ones that do not fit) are counted
  int64_t cap;          // spans a track holds
  int64_t *n;           // per track: spans recorded
  RtTraceSpan *span;
  int32_t runs;         // runs recorded (rt_plan_run_traced calls)
  int32_t runs_dropped; // runs that did not fit
  double origin;        // omp_get_wtime() when the trace began
} RtTrace;

// A trace of the first `runs` runs of a plan of up to `steps` steps on up to `threads`
// threads. False when out of memory.
bool rt_trace_init(RtTrace *t, int threads, int runs, int64_t steps);
void rt_trace_free(RtTrace *t);

#endif
