// kiln.Model (docs/python.md): a model file compiled with its --set values, weights held by
// name, run on dicts of arrays; grad() compiles the loss and its gradients on first use.
// The compiled programs are the library's KilnModels (api/kiln.h): `full` reads every input;
// run() on fewer inputs compiles what they allow (as kiln run does), kept until other inputs.
#include "python/pykiln.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct Compiled {  // a compiled KilnModel and the weights it holds
  KilnModel *m;
  uint64_t gen;  // the weights' generation bound (0: none)
} Compiled;

typedef struct PyModel {
  PyObject_HEAD
  PyObject *path;  // bytes
  PyObject *keep;  // the strings `sets` points to
  KilnSet *sets;
  KilnOptions opt;
  PyObject *inputs, *outputs, *params;  // descriptions: name -> (shape, dtype)
  Compiled full;                        // every output, every input
  Compiled part;                        // the outputs part_key's inputs allow
  PyObject *part_key;                   // frozenset of input names
  Compiled grad;                        // the loss grad_loss and the gradients
  PyObject *grad_loss;                  // str
  StFile w;                             // the weights (n = 0: none yet)
  uint64_t gen;                         // bumped by init and load_weights
  bool busy;                            // a call is running with the GIL released
} PyModel;

// ---- helpers -------------------------------------------------------------------------------

// Opens and compiles with opt (GIL released while compiling).
static bool open_compiled(PyModel *self, const KilnOptions *opt, const StFile *given, Compiled *c) {
  Diag d = {0};
  bool ok;
  KilnModel *m = NULL;
  Py_BEGIN_ALLOW_THREADS
  ok = kiln_model_open(PyBytes_AS_STRING(self->path), opt, &m, &d) && (!given || kiln_select_given(m, given, &d)) &&
       kiln_compile(m, &d);
  Py_END_ALLOW_THREADS
  if (!ok) {
    kiln_model_free(m);
    py_raise(&d);
    return false;
  }
  *c = (Compiled){m, 0};
  return true;
}

static void drop(Compiled *c) {
  kiln_model_free(c->m);
  *c = (Compiled){0};
}

// The current weights into c, when it does not hold them yet.
static bool bind_weights(PyModel *self, Compiled *c) {
  if (c->gen == self->gen || !self->w.n) return true;
  Diag d = {0};
  bool ok;
  Py_BEGIN_ALLOW_THREADS
  ok = kiln_bind_params(c->m, &self->w, &d);
  Py_END_ALLOW_THREADS
  if (!ok) return py_raise(&d), false;
  c->gen = self->gen;
  return true;
}

static bool enter(PyModel *self) {
  if (self->busy) {
    PyErr_SetString(py_kiln_error, "kiln.Model: already running in another thread (use one Model per thread)");
    return false;
  }
  return self->busy = true;
}

// New weights: every compiled program binds them before its next run; the one that runs
// now binds them at once, so that a bad file fails in the call that gave it and the
// weights before it stay (bound again everywhere: the failed bind may have written some).
static PyObject *set_weights(PyModel *self, StFile *w) {
  StFile old = self->w;
  self->w = *w;
  self->gen++;
  if (!bind_weights(self, &self->full)) {
    st_free(&self->w);
    self->w = old;
    self->gen++;
    return NULL;
  }
  st_free(&old);
  Py_RETURN_NONE;
}

// The inputs dict as a tensor file, refusing names that are not inputs.
static bool inputs_file(PyModel *self, PyObject *inputs, StFile *f, PyObject **keep) {
  if (!py_dict_to_file(inputs, "inputs", f, keep)) return false;
  for (int i = 0; i < f->n; i++) {
    if (PyDict_GetItemString(self->inputs, f->tensors[i].name)) continue;
    PyObject *sep = PyUnicode_FromString(", "), *names = sep ? PyUnicode_Join(sep, self->inputs) : NULL;
    Py_XDECREF(sep);
    if (names)
      PyErr_Format(py_kiln_error, "inputs: \"%s\" is not an input of %s (its inputs: %U)", f->tensors[i].name,
                   PyBytes_AS_STRING(self->path), names);
    Py_XDECREF(names);
    st_free(f);
    Py_CLEAR(*keep);
    return false;
  }
  return true;
}

// Binds weights and inputs, runs, and reads every selected output into a dict.
static PyObject *run_on(PyModel *self, Compiled *c, const StFile *in, uint64_t seed) {
  if (!bind_weights(self, c)) return NULL;
  Diag d = {0};
  bool ok;
  Py_BEGIN_ALLOW_THREADS
  ok = kiln_bind_inputs(c->m, in, &d) && kiln_run(c->m, seed, &d);
  Py_END_ALLOW_THREADS
  if (!ok) return py_raise(&d);
  PyObject *out = PyDict_New();
  for (int i = 0, n = kiln_count(c->m, KILN_OUTPUT); out && i < n; i++) {
    KilnTensorInfo info = kiln_info(c->m, KILN_OUTPUT, i);
    StTensor t;
    PyObject *a = kiln_tensor(c->m, info.name, &t, &d) ? py_tensor_to_array(&t) : py_raise(&d);
    if (!a || PyDict_SetItemString(out, info.name, a) < 0) Py_CLEAR(out);
    Py_XDECREF(a);
  }
  return out;
}

// ---- the type ------------------------------------------------------------------------------

static int model_init(PyModel *self, PyObject *args, PyObject *kw) {
  static char *names[] = {"path", "set", "threads", "backend", "precision", "output_attentions", NULL};
  static const char *const attentions[] = {"attentions"};
  PyObject *path, *set = NULL, *threads = NULL;
  const char *backend = "jit", *precision = "fp32";
  int output_attentions = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOssp:Model", names, &path, &set, &threads, &backend, &precision,
                                   &output_attentions))
    return -1;
  if (self->path) {
    PyErr_SetString(PyExc_TypeError, "kiln.Model is initialised once");
    return -1;
  }
  if (!(self->path = py_path(path)) ||
      !py_options(set, threads, backend, precision, &self->opt, &self->sets, &self->keep))
    return -1;
  self->opt.output_groups = output_attentions ? attentions : NULL;  // as kiln run --output-attentions
  self->opt.n_output_groups = output_attentions;
  if (!open_compiled(self, &self->opt, NULL, &self->full)) return -1;
  self->inputs = py_describe(self->full.m, KILN_INPUT);
  self->outputs = py_describe(self->full.m, KILN_OUTPUT);
  self->params = py_describe(self->full.m, KILN_PARAM);
  return self->inputs && self->outputs && self->params ? 0 : -1;
}

static void model_dealloc(PyModel *self) {
  drop(&self->full);
  drop(&self->part);
  drop(&self->grad);
  st_free(&self->w);
  PyMem_Free(self->sets);
  Py_XDECREF(self->path);
  Py_XDECREF(self->keep);
  Py_XDECREF(self->inputs);
  Py_XDECREF(self->outputs);
  Py_XDECREF(self->params);
  Py_XDECREF(self->part_key);
  Py_XDECREF(self->grad_loss);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static bool ready(PyModel *self) {
  if (self->full.m) return true;
  PyErr_SetString(py_kiln_error, "kiln.Model: not initialised");
  return false;
}

// Every parameter of m (initialised) into a new file w, one buffer as st_read makes.
static bool params_file(KilnModel *m, StFile *w, Diag *d) {
  int n = kiln_count(m, KILN_PARAM);
  size_t total = 0;
  for (int i = 0; i < n; i++) {
    KilnTensorInfo t = kiln_info(m, KILN_PARAM, i);
    size_t count = 1;
    for (int k = 0; k < t.rank; k++) count *= (size_t)t.shape[k];
    total += count * dt_size(t.dtype);
  }
  char *p = w->buffer = malloc(total + 1);
  w->tensors = calloc((size_t)n + 1, sizeof *w->tensors);
  w->path = strdup("init");
  if (!p || !w->tensors || !w->path) return diag_error(d, "out of memory for the initial weights");
  w->size = total;
  for (int i = 0; i < n; i++) {
    StTensor t;
    if (!kiln_tensor(m, kiln_info(m, KILN_PARAM, i).name, &t, d)) return false;
    if (!(t.name = strdup(t.name))) return diag_error(d, "out of memory");
    t.data = memcpy(p, t.data, t.nbytes);  // copied: the next read reuses the model's buffer
    p += t.nbytes;
    w->tensors[w->n++] = t;
  }
  return true;
}

static PyObject *model_init_weights(PyModel *self, PyObject *args, PyObject *kw) {
  static char *names[] = {"seed", NULL};
  unsigned long long seed = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|K:init", names, &seed) || !ready(self) || !enter(self)) return NULL;
  // As kiln init: the reference backend's initial values, in each parameter's dtype.
  KilnOptions ro = self->opt;
  ro.backend = KILN_BACKEND_REF;
  KilnModel *m = NULL;
  Diag d = {0};
  StFile w = {0};
  bool ok;
  Py_BEGIN_ALLOW_THREADS
  ok = kiln_model_open(PyBytes_AS_STRING(self->path), &ro, &m, &d) && kiln_compile(m, &d) &&
       kiln_init_params(m, seed, &d) && params_file(m, &w, &d);
  kiln_model_free(m);
  Py_END_ALLOW_THREADS
  PyObject *r = ok ? set_weights(self, &w) : (st_free(&w), py_raise(&d));
  self->busy = false;
  return r;
}

static PyObject *model_load_weights(PyModel *self, PyObject *arg) {
  StFile w;
  if (!ready(self) || !enter(self)) return NULL;
  // A path is opened, not read: each compiled program reads the tensors into its own
  // buffers (the weights only GEMMs read held packed only), and no copy of the file stays.
  PyObject *r = py_file_arg(arg, "weights", true, &w) ? set_weights(self, &w) : NULL;
  self->busy = false;
  return r;
}

// The weights the model's parameters have, in their order.
static PyObject *model_weights(PyModel *self, PyObject *unused) {
  if (!ready(self)) return NULL;
  if (!self->w.n) return PyErr_Format(py_kiln_error, "%s: no weights yet: call init() or load_weights() first",
                                      PyBytes_AS_STRING(self->path));
  PyObject *out = PyDict_New();
  for (int i = 0, n = kiln_count(self->full.m, KILN_PARAM); out && i < n; i++) {
    const char *name = kiln_info(self->full.m, KILN_PARAM, i).name;
    const StTensor *t = st_find(&self->w, name);
    if (!t) continue;
    PyObject *a = py_file_tensor_to_array(&self->w, t);
    if (!a || PyDict_SetItemString(out, name, a) < 0) Py_CLEAR(out);
    Py_XDECREF(a);
  }
  return out;
}

static PyObject *model_run(PyModel *self, PyObject *args, PyObject *kw) {
  static char *names[] = {"inputs", "seed", NULL};
  PyObject *inputs, *keep;
  unsigned long long seed = 0;
  StFile in;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O|K:run", names, &inputs, &seed) || !ready(self)) return NULL;
  if (!inputs_file(self, inputs, &in, &keep)) return NULL;
  if (!enter(self)) goto done;
  PyObject *r = NULL, *key = PyFrozenSet_New(inputs);
  Compiled *c = &self->full;
  if (key && PySet_GET_SIZE(key) < PyDict_GET_SIZE(self->inputs)) {  // fewer inputs: fewer outputs
    int same = self->part_key ? PyObject_RichCompareBool(key, self->part_key, Py_EQ) : 0;
    if (same < 0) goto out;
    if (!same) {
      drop(&self->part);
      Py_CLEAR(self->part_key);
      if (!open_compiled(self, &self->opt, &in, &self->part)) goto out;
      self->part_key = Py_NewRef(key);
    }
    c = &self->part;
  }
  if (key) r = run_on(self, c, &in, seed);
out:
  Py_XDECREF(key);
  self->busy = false;
  st_free(&in);
  Py_DECREF(keep);
  return r;
done:
  st_free(&in);
  Py_DECREF(keep);
  return NULL;
}

static PyObject *model_grad(PyModel *self, PyObject *args, PyObject *kw) {
  static char *names[] = {"inputs", "loss", "seed", NULL};
  PyObject *inputs, *keep, *loss = Py_None;
  unsigned long long seed = 0;
  StFile in;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OK:grad", names, &inputs, &loss, &seed) || !ready(self)) return NULL;
  if (loss == Py_None) loss = PyUnicode_FromString("loss");
  else if (PyUnicode_Check(loss)) Py_INCREF(loss);
  else return PyErr_Format(PyExc_TypeError, "grad: loss must be a str, not %R", loss);
  PyObject *r = NULL;
  if (!loss || !inputs_file(self, inputs, &in, &keep)) {
    Py_XDECREF(loss);
    return NULL;
  }
  if (enter(self)) {
    int same = self->grad_loss ? PyUnicode_Compare(loss, self->grad_loss) == 0 : 0;
    bool ok = true;
    if (!same) {  // as kiln grad: the loss and every gradient, dropout on
      drop(&self->grad);
      Py_CLEAR(self->grad_loss);
      KilnOptions go = self->opt;
      go.grad_loss = PyUnicode_AsUTF8(loss);
      go.training = true;
      ok = go.grad_loss && open_compiled(self, &go, NULL, &self->grad);
      if (ok) self->grad_loss = Py_NewRef(loss);
    }
    if (ok) r = run_on(self, &self->grad, &in, seed);
    self->busy = false;
  }
  Py_DECREF(loss);
  st_free(&in);
  Py_DECREF(keep);
  return r;
}

static PyObject *get_inputs(PyModel *self, void *c) { return ready(self) ? Py_NewRef(self->inputs) : NULL; }
static PyObject *get_outputs(PyModel *self, void *c) { return ready(self) ? Py_NewRef(self->outputs) : NULL; }
static PyObject *get_params(PyModel *self, void *c) { return ready(self) ? Py_NewRef(self->params) : NULL; }

static PyGetSetDef model_getset[] = {
    {"inputs", (getter)get_inputs, NULL, "name -> (shape, dtype) of every input", NULL},
    {"outputs", (getter)get_outputs, NULL, "name -> (shape, dtype) of every output and loss", NULL},
    {"params", (getter)get_params, NULL, "name -> (shape, dtype) of every parameter", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef model_methods[] = {
    {"init", (PyCFunction)(void (*)(void))model_init_weights, METH_VARARGS | METH_KEYWORDS,
     "init(seed=0): the parameters' initial values, as kiln init --seed"},
    {"load_weights", (PyCFunction)model_load_weights, METH_O,
     "load_weights(path_or_dict): weights by name from a safetensors file or a dict of arrays"},
    {"weights", (PyCFunction)model_weights, METH_NOARGS, "weights() -> dict of arrays: the parameters' values"},
    {"run", (PyCFunction)(void (*)(void))model_run, METH_VARARGS | METH_KEYWORDS,
     "run(inputs, seed=0) -> dict of arrays: the outputs the inputs allow, as kiln run"},
    {"grad", (PyCFunction)(void (*)(void))model_grad, METH_VARARGS | METH_KEYWORDS,
     "grad(inputs, loss=None, seed=0) -> dict: \"loss\" and every parameter's gradient, as kiln grad"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject py_model_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kiln.Model",
    .tp_doc = "Model(path, set=None, threads=None, backend=\"jit\", precision=\"fp32\", output_attentions=False): "
              "a compiled model file",
    .tp_basicsize = sizeof(PyModel),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)model_init,
    .tp_dealloc = (destructor)model_dealloc,
    .tp_methods = model_methods,
    .tp_getset = model_getset,
};
