// kiln.Trainer (docs/python.md): the library's trainer (api/kiln.h, KilnTrainer: loss,
// gradients and the optimiser's update in one JIT program), driven a step at a time from
// Python: on the batches the caller gives, or on a data file's as `kiln train` takes them.
#include "python/pykiln.h"

#include <string.h>

typedef struct PyTrainer {
  PyObject_HEAD
  KilnTrainer *t;
  PyObject *path;  // bytes
  int64_t done;    // steps run
  bool has_data, has_weights, busy;
} PyTrainer;

static bool ready(PyTrainer *self) {
  if (!self->t) {
    PyErr_SetString(py_kiln_error, "kiln.Trainer: not initialised");
    return false;
  }
  if (self->busy) {
    PyErr_SetString(py_kiln_error, "kiln.Trainer: already running in another thread");
    return false;
  }
  return true;
}

static int trainer_init(PyTrainer *self, PyObject *args, PyObject *kw) {
  static char *names[] = {"model_path", "set", "optimizer", "lr", "steps", "seed", "loss", "threads", "precision", "recompute", NULL};
  PyObject *path, *set = NULL, *threads = NULL, *keep = NULL;
  const char *optimizer = "adamw", *loss = NULL, *precision = "fp32", *recompute = NULL;
  double lr = 0;
  long long steps = 100;
  unsigned long long seed = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OsdLKzOsz:Trainer", names, &path, &set, &optimizer, &lr, &steps, &seed,
                                   &loss, &threads, &precision, &recompute))
    return -1;
  if (self->t) {
    PyErr_SetString(PyExc_TypeError, "kiln.Trainer is initialised once");
    return -1;
  }
  if (strcmp(optimizer, "adamw") != 0 && strcmp(optimizer, "sgd") != 0) {  // kiln train's message
    PyErr_Format(py_kiln_error, "optimizer must be adamw or sgd, not \"%s\"", optimizer);
    return -1;
  }
  if (steps < 1) {
    PyErr_Format(py_kiln_error, "steps must be at least 1, not %lld", steps);
    return -1;
  }
  if (recompute && strcmp(recompute, "layers") != 0) {  // kiln train --recompute's message
    PyErr_Format(py_kiln_error, "recompute takes \"layers\", not \"%s\"", recompute);
    return -1;
  }
  KilnOptions opt;
  KilnSet *sets = NULL;
  if (!(self->path = py_path(path)) || !py_options(set, threads, "jit", precision, &opt, &sets, &keep)) {
    PyMem_Free(sets);
    Py_XDECREF(keep);
    return -1;
  }
  opt.recompute_layers = recompute != NULL;
  KilnTrainOptions to = {.optimizer = optimizer, .lr = lr, .steps = steps, .loss = loss, .seed = seed};
  Diag d = {0};
  bool ok;
  Py_BEGIN_ALLOW_THREADS
  ok = kiln_trainer_open(PyBytes_AS_STRING(self->path), &opt, &to, &self->t, &d);
  Py_END_ALLOW_THREADS
  PyMem_Free(sets);  // read during the call only
  Py_DECREF(keep);
  if (!ok) {
    self->t = NULL;
    py_raise(&d);
    return -1;
  }
  return 0;
}

static void trainer_dealloc(PyTrainer *self) {
  kiln_trainer_free(self->t);
  Py_XDECREF(self->path);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *trainer_init_weights(PyTrainer *self, PyObject *args, PyObject *kw) {
  static char *names[] = {"seed", NULL};
  unsigned long long seed = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|K:init", names, &seed) || !ready(self)) return NULL;
  Diag d = {0};
  if (!kiln_init_params(kiln_trainer_model(self->t), seed, &d)) return py_raise(&d);
  self->has_weights = true;
  Py_RETURN_NONE;
}

static PyObject *trainer_load_weights(PyTrainer *self, PyObject *arg) {
  StFile w;
  if (!ready(self) || !py_file_arg(arg, "weights", false, &w)) return NULL;
  Diag d = {0};
  bool ok = kiln_bind_params(kiln_trainer_model(self->t), &w, &d);
  st_free(&w);
  if (!ok) return py_raise(&d);
  self->has_weights = true;
  Py_RETURN_NONE;
}

// The training data: step() then takes its batches as kiln train --data does.
static PyObject *trainer_data(PyTrainer *self, PyObject *arg) {
  StFile f;
  if (!ready(self)) return NULL;
  if (self->has_data) return PyErr_Format(py_kiln_error, "kiln.Trainer: data() is given once");
  if (!py_file_arg(arg, "data", false, &f)) return NULL;  // a path, or a dict (copied)
  Diag d = {0};
  bool ok;
  Py_BEGIN_ALLOW_THREADS
  ok = kiln_trainer_data(self->t, &f, &d);
  Py_END_ALLOW_THREADS
  st_free(&f);
  if (!ok) return py_raise(&d);
  self->has_data = true;
  Py_RETURN_NONE;
}

static PyObject *trainer_step(PyTrainer *self, PyObject *args, PyObject *kw) {
  static char *names[] = {"batch", NULL};
  PyObject *batch = Py_None, *keep = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:step", names, &batch) || !ready(self)) return NULL;
  if (!self->has_weights)
    return PyErr_Format(py_kiln_error, "%s: no weights yet: call init() or load_weights() first",
                        PyBytes_AS_STRING(self->path));
  if (self->has_data == (batch != Py_None))
    return PyErr_Format(py_kiln_error, self->has_data ? "step: the batches come from data(); call step() without one"
                                                      : "step needs a batch (a dict of the model's inputs) or data()");
  if (self->done >= kiln_trainer_steps(self->t))
    return PyErr_Format(py_kiln_error, "step: all %lld steps are done", (long long)kiln_trainer_steps(self->t));
  StFile in = {0};
  Diag d = {0};
  if (batch != Py_None && !py_dict_to_file(batch, "batch", &in, &keep)) return NULL;
  KilnTensorInfo info;
  for (int i = 0; i < in.n; i++)  // (the data binding skips them; a batch names inputs only)
    if (!kiln_find(kiln_trainer_model(self->t), KILN_INPUT, in.tensors[i].name, &info)) {
      PyErr_Format(py_kiln_error, "batch: \"%s\" is not an input of %s", in.tensors[i].name,
                   PyBytes_AS_STRING(self->path));
      st_free(&in);
      Py_DECREF(keep);
      return NULL;
    }
  KilnStepResult r;
  bool ok;
  self->busy = true;
  Py_BEGIN_ALLOW_THREADS
  ok = (batch == Py_None || kiln_bind_inputs(kiln_trainer_model(self->t), &in, &d)) &&
       kiln_trainer_step(self->t, self->done, &r, &d);
  Py_END_ALLOW_THREADS
  self->busy = false;
  st_free(&in);
  Py_XDECREF(keep);
  if (!ok) return diag_prefix(&d, "step %lld: ", (long long)self->done + 1), py_raise(&d);
  self->done++;
  return PyFloat_FromDouble(r.loss);
}

static PyObject *trainer_save(PyTrainer *self, PyObject *args, PyObject *kw) {
  static char *names[] = {"path", "checkpoint", NULL};
  PyObject *path;
  int checkpoint = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p:save", names, &path, &checkpoint) || !ready(self)) return NULL;
  PyObject *p = py_path(path);
  if (!p) return NULL;
  Diag d = {0};
  bool ok;
  Py_BEGIN_ALLOW_THREADS
  ok = kiln_trainer_save(self->t, PyBytes_AS_STRING(p), self->done, checkpoint, &d);
  Py_END_ALLOW_THREADS
  Py_DECREF(p);
  if (!ok) return py_raise(&d);
  Py_RETURN_NONE;
}

// The parameters' current values (kiln_tensor would name their gradients: the trainer's
// outputs are called by the parameters' names).
static PyObject *trainer_weights(PyTrainer *self, PyObject *unused) {
  if (!ready(self)) return NULL;
  KilnModel *m = kiln_trainer_model(self->t);
  PyObject *out = PyDict_New();
  for (int i = 0, n = kiln_trainer_n_params(self->t); out && i < n; i++) {
    KilnParamView p = kiln_trainer_param(self->t, i);
    KilnTensorInfo info;
    if (!kiln_find(m, KILN_PARAM, p.name, &info)) continue;  // (not reached: the views are parameters)
    StTensor t = {.name = (char *)p.name, .dtype = DT_F32, .rank = info.rank, .data = p.value,
                  .nbytes = (size_t)p.numel * sizeof(float)};
    memcpy(t.shape, info.shape, sizeof t.shape);
    PyObject *a = py_tensor_to_array(&t);
    if (!a || PyDict_SetItemString(out, p.name, a) < 0) Py_CLEAR(out);
    Py_XDECREF(a);
  }
  return out;
}

static PyObject *get_done(PyTrainer *self, void *c) { return PyLong_FromLongLong(self->done); }
static PyObject *get_steps(PyTrainer *self, void *c) {
  return self->t ? PyLong_FromLongLong(kiln_trainer_steps(self->t)) : (ready(self), NULL);
}

static PyGetSetDef trainer_getset[] = {
    {"steps_done", (getter)get_done, NULL, "the steps run so far", NULL},
    {"steps", (getter)get_steps, NULL, "the run's length (the learning-rate schedule's)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef trainer_methods[] = {
    {"init", (PyCFunction)(void (*)(void))trainer_init_weights, METH_VARARGS | METH_KEYWORDS,
     "init(seed=0): initial weights, as kiln init --seed"},
    {"load_weights", (PyCFunction)trainer_load_weights, METH_O,
     "load_weights(path_or_dict): starting weights by name"},
    {"data", (PyCFunction)trainer_data, METH_O,
     "data(path_or_dict): training data; step() then takes its batches as kiln train --data"},
    {"step", (PyCFunction)(void (*)(void))trainer_step, METH_VARARGS | METH_KEYWORDS,
     "step(batch=None) -> loss: one optimiser step on batch (a dict of inputs) or data()'s next batch"},
    {"save", (PyCFunction)(void (*)(void))trainer_save, METH_VARARGS | METH_KEYWORDS,
     "save(path, checkpoint=False): the weights (with the optimiser state: a checkpoint kiln train --resume reads)"},
    {"weights", (PyCFunction)trainer_weights, METH_NOARGS, "weights() -> dict of arrays: the current parameters"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject py_trainer_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kiln.Trainer",
    .tp_doc = "Trainer(model_path, set=None, optimizer=\"adamw\", lr=0 (AdamW 1e-4, SGD 1e-2), steps=100, seed=0, "
              "loss=None, threads=None, precision=\"fp32\" (or \"bf16\": mixed precision), recompute=None (or "
              "\"layers\": activation checkpointing, the same bits)",
    .tp_basicsize = sizeof(PyTrainer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)trainer_init,
    .tp_dealloc = (destructor)trainer_dealloc,
    .tp_methods = trainer_methods,
    .tp_getset = trainer_getset,
};
